//! camstream end-to-end tests, in one binary (ripgrep's layout). Each module
//! runs the real binaries against real substitutes: TCP on loopback, Xvfb,
//! a vivid V4L2 device in a QEMU guest, and OpenCV peers in Python.

mod agent;
mod deploy;
mod interop;
mod viewer;
mod vm;
mod windows;
