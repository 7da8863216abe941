//! V4L2 mmap streaming, our own small version over `v4l`'s ioctl bindings:
//! REQBUFS, QUERYBUF and mmap at setup; QBUF, STREAMON, DQBUF while
//! capturing; and a Drop that never panics.
//!
//! Why not `v4l`'s `MmapStream`: its Drop panics when VIDIOC_STREAMOFF
//! fails (with anything but ENODEV), and its buffer arena's Drop panics when
//! REQBUFS(0) fails. We used to leak the stream instead (`mem::forget`), but
//! it owns the device fd and every mapping holds the file open too, so the
//! driver never saw a release and every `--reopen` after that found the
//! camera "busy" forever.
//!
//! [`Drop`] releases in the order that always works: STREAMOFF, unmap every
//! buffer, REQBUFS(0), each best-effort. Whatever fails, the mappings are
//! gone, and when the [`Device`] (which owns the fd) is dropped after us, the
//! last close makes the driver stop streaming and free its buffers itself
//! (videobuf2 does so on release), so the camera is free for the next open.
//!
//! One buffer at a time is held by us: [`Stream::dequeue`] hands out an
//! index, the caller copies the frame out and gives it back with
//! [`Stream::queue`] at once.

use std::ffi::c_void;
use std::io;
use std::ptr;

use nix::libc;
use v4l::v4l2;
use v4l::v4l2::vidioc;
use v4l::v4l_sys;
use v4l::Device;

/// One frame the driver filled.
#[derive(Debug, Clone, Copy)]
pub struct Dequeued {
    /// Which buffer: give it back with [`Stream::queue`].
    pub index: usize,
    /// Bytes of the buffer the driver filled.
    pub bytesused: u32,
    /// The driver flagged the frame as corrupt (V4L2_BUF_FLAG_ERROR).
    pub error: bool,
}

/// An mmap'd buffer: its address and length, as `mmap` returned them.
struct Mapping {
    ptr: *mut c_void,
    len: usize,
}

/// Maps `len` bytes of `device` from `offset`, shared and writable: how a
/// capture buffer is mapped.
///
/// # Safety
///
/// `len` and `offset` must name memory the device can map (for a capture
/// buffer, what VIDIOC_QUERYBUF gave), and the mapping must be unmapped
/// once, by a [`Stream`] holding it.
unsafe fn map_buffer(device: &Device, len: usize, offset: libc::off_t) -> io::Result<*mut c_void> {
    // SAFETY: a new mapping at an address the kernel picks: it overlaps
    // nothing of ours; the caller upholds the rest.
    unsafe {
        v4l2::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            device.handle().fd(),
            offset,
        )
    }
}

/// The buffers of one capture session, mapped into our memory.
pub struct Stream<'d> {
    device: &'d Device,
    buffers: Vec<Mapping>,
    streaming: bool,
}

impl<'d> Stream<'d> {
    /// Asks the driver for `count` buffers (it may grant fewer, or more) and
    /// maps each. On error, what was set up is released again.
    pub fn new(device: &'d Device, count: u32) -> io::Result<Stream<'d>> {
        let mut stream = Stream {
            device,
            buffers: Vec::new(),
            streaming: false,
        };
        let mut req = request_buffers(count);
        // SAFETY: VIDIOC_REQBUFS reads and rewrites one v4l2_requestbuffers.
        unsafe { stream.ioctl(vidioc::VIDIOC_REQBUFS, &mut req)? };
        for index in 0..req.count {
            let mut buf = buffer(index);
            // SAFETY: VIDIOC_QUERYBUF reads and rewrites one v4l2_buffer.
            unsafe { stream.ioctl(vidioc::VIDIOC_QUERYBUF, &mut buf)? };
            let len = buf.length as usize;
            // SAFETY: the length and offset the driver gave for this
            // buffer; `m.offset` is the union member MMAP uses.
            let ptr = unsafe { map_buffer(device, len, buf.m.offset as libc::off_t)? };
            stream.buffers.push(Mapping { ptr, len });
        }
        if stream.buffers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "the driver granted no buffers",
            ));
        }
        Ok(stream)
    }

    /// How many buffers the driver granted.
    pub fn count(&self) -> usize {
        self.buffers.len()
    }

    /// Gives buffer `index` to the driver to fill.
    pub fn queue(&mut self, index: usize) -> io::Result<()> {
        let mut buf = buffer(index as u32);
        // SAFETY: VIDIOC_QBUF reads and rewrites one v4l2_buffer.
        unsafe { self.ioctl(vidioc::VIDIOC_QBUF, &mut buf) }
    }

    /// Starts capturing into the queued buffers.
    pub fn start(&mut self) -> io::Result<()> {
        let mut kind = CAPTURE as libc::c_int;
        // SAFETY: VIDIOC_STREAMON reads one int, the buffer type.
        unsafe { self.ioctl(vidioc::VIDIOC_STREAMON, &mut kind)? };
        self.streaming = true;
        Ok(())
    }

    /// Takes a filled buffer from the driver. The fd is non-blocking, so
    /// with none ready this fails with WouldBlock: poll the fd first.
    pub fn dequeue(&mut self) -> io::Result<Dequeued> {
        let mut buf = buffer(0);
        // SAFETY: VIDIOC_DQBUF reads and rewrites one v4l2_buffer.
        unsafe { self.ioctl(vidioc::VIDIOC_DQBUF, &mut buf)? };
        let index = buf.index as usize;
        if index >= self.buffers.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the driver returned buffer {index} of {}",
                    self.buffers.len()
                ),
            ));
        }
        Ok(Dequeued {
            index,
            bytesused: buf.bytesused,
            error: buf.flags & v4l_sys::V4L2_BUF_FLAG_ERROR != 0,
        })
    }

    /// The bytes the driver filled in a dequeued buffer (`bytesused`, and
    /// never past the mapping, whatever the driver says).
    pub fn data(&self, frame: &Dequeued) -> &[u8] {
        let len = frame.bytesused as usize;
        let mapping = &self.buffers[frame.index];
        // SAFETY: the mapping is `mapping.len` readable bytes for as long
        // as `self` lives (unmapped only in Drop), and the driver does not
        // write to a buffer we dequeued until we queue it again, which takes
        // `&mut self` and so ends this borrow.
        unsafe { std::slice::from_raw_parts(mapping.ptr as *const u8, len.min(mapping.len)) }
    }

    /// Issues `request` on the device with `arg`.
    ///
    /// # Safety
    /// `arg` must be the type the ioctl reads and writes.
    unsafe fn ioctl<T>(&self, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
        v4l2::ioctl(
            self.device.handle().fd(),
            request,
            arg as *mut T as *mut c_void,
        )
    }
}

impl Drop for Stream<'_> {
    /// Never panics; see the module doc for why the device is released even
    /// when a step fails.
    fn drop(&mut self) {
        if self.streaming {
            let mut kind = CAPTURE as libc::c_int;
            // SAFETY: VIDIOC_STREAMOFF reads one int, the buffer type.
            if let Err(e) = unsafe { self.ioctl(vidioc::VIDIOC_STREAMOFF, &mut kind) } {
                log::debug!("VIDIOC_STREAMOFF failed ({e}); closing the device stops it");
            }
        }
        for mapping in self.buffers.drain(..) {
            // SAFETY: exactly a mapping mmap returned, unmapped once (drained);
            // no slice into it outlives `&self`.
            if let Err(e) = unsafe { v4l2::munmap(mapping.ptr, mapping.len) } {
                log::debug!("munmap of a capture buffer failed ({e})");
            }
        }
        let mut req = request_buffers(0);
        // SAFETY: VIDIOC_REQBUFS reads and rewrites one v4l2_requestbuffers.
        if let Err(e) = unsafe { self.ioctl(vidioc::VIDIOC_REQBUFS, &mut req) } {
            log::debug!("freeing the capture buffers failed ({e}); closing the device frees them");
        }
    }
}

const CAPTURE: u32 = v4l_sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;

fn request_buffers(count: u32) -> v4l_sys::v4l2_requestbuffers {
    // SAFETY: all-zero is a valid v4l2_requestbuffers (plain integers).
    let mut req: v4l_sys::v4l2_requestbuffers = unsafe { std::mem::zeroed() };
    req.count = count;
    req.type_ = CAPTURE;
    req.memory = v4l_sys::v4l2_memory_V4L2_MEMORY_MMAP;
    req
}

fn buffer(index: u32) -> v4l_sys::v4l2_buffer {
    // SAFETY: all-zero is a valid v4l2_buffer (integers, a timeval, and a
    // union whose members are integers or a pointer, null here).
    let mut buf: v4l_sys::v4l2_buffer = unsafe { std::mem::zeroed() };
    buf.index = index;
    buf.type_ = CAPTURE;
    buf.memory = v4l_sys::v4l2_memory_V4L2_MEMORY_MMAP;
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that answers no V4L2 ioctl: setup fails cleanly, and the
    /// Drop of the half-built stream (nothing mapped, REQBUFS(0) failing
    /// with ENOTTY) does not panic, where `v4l`'s arena would have.
    #[test]
    fn failed_setup_releases_without_panicking() {
        let device = Device::with_path("/dev/null").unwrap();
        let err = Stream::new(&device, 4)
            .err()
            .expect("/dev/null has no buffers");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }

    /// A stream that failed to stop is dropped without a panic, and its
    /// device can be closed: the leak that kept the camera busy for every
    /// `--reopen` is gone.
    #[test]
    fn drop_after_a_failed_streamoff_does_not_panic() {
        let device = Device::with_path("/dev/null").unwrap();
        let stream = Stream {
            device: &device,
            buffers: Vec::new(),
            // STREAMOFF on /dev/null fails (ENOTTY), as on a broken driver.
            streaming: true,
        };
        drop(stream);
        drop(device);
    }

    /// Drop unmaps every buffer: a mapping holds the device file open, so
    /// one left behind keeps the camera busy after the fd is closed.
    #[test]
    fn drop_unmaps_every_buffer() {
        let device = Device::with_path("/dev/null").unwrap();
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let len = 8192;
        // SAFETY: a fresh private read-only mapping of /dev/zero.
        let ptr = unsafe {
            v4l2::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&zero),
                0,
            )
            .unwrap()
        };
        let mapped = || {
            let start = format!("{:x}-", ptr as usize);
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .any(|l| l.starts_with(&start) && l.ends_with("/dev/zero"))
        };
        assert!(mapped());
        let stream = Stream {
            device: &device,
            buffers: vec![Mapping { ptr, len }],
            streaming: true,
        };
        let frame = Dequeued {
            index: 0,
            bytesused: 1 << 30,
            error: false,
        };
        // A driver's bytesused past the buffer is cut to the mapping.
        assert_eq!(stream.data(&frame).len(), len);
        drop(stream);
        assert!(!mapped());
    }

    /// Issue 16: a failed STREAMOFF leaked the device fd and the buffer
    /// mappings, and the driver, never seeing a release, found the camera
    /// busy at every `--reopen`. The fake device is a regular file: every
    /// V4L2 ioctl on it fails (ENOTTY), STREAMOFF and REQBUFS(0) included,
    /// and it is mapped like a capture buffer. Once the stream and then the
    /// device are dropped, nothing in the process refers to the file: no fd
    /// in /proc/self/fd and no mapping in /proc/self/maps, which is what the
    /// driver's release, and so the next open, waits for.
    #[test]
    fn a_failed_streamoff_still_releases_the_fd_and_every_mapping() {
        let path = std::env::temp_dir().join(format!(
            "camstream-fake-video-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let path = path.canonicalize().unwrap();
        let shown = path.to_string_lossy().into_owned();
        let fds = || -> usize {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| *target == path)
                .count()
        };
        let maps = || -> usize {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .filter(|l| l.ends_with(shown.as_str()))
                .count()
        };

        let device = Device::with_path(&path).unwrap();
        let len = 8192;
        // SAFETY: the whole file, mapped as mmap streaming maps a buffer;
        // the stream unmaps it.
        let ptr = unsafe { map_buffer(&device, len, 0).unwrap() };
        assert_eq!(
            (fds(), maps()),
            (1, 1),
            "the fake camera is open and mapped"
        );
        let stream = Stream {
            device: &device,
            buffers: vec![Mapping { ptr, len }],
            streaming: true,
        };
        // STREAMOFF fails here, as on a broken driver.
        let mut off = CAPTURE;
        // SAFETY: VIDIOC_STREAMOFF reads one buffer type.
        let failed = unsafe { stream.ioctl(vidioc::VIDIOC_STREAMOFF, &mut off) };
        assert!(failed.is_err(), "STREAMOFF must fail on the fake device");
        drop(stream);
        assert_eq!(maps(), 0, "the mappings go with the stream");
        drop(device);
        assert_eq!(fds(), 0, "the fd goes with the device");
        std::fs::remove_file(&path).unwrap();
    }
}
