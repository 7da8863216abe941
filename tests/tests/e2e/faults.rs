//! Faults, load and soak: the viewer killed, stopped and flooded while agents stream.
