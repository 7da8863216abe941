//! `--record DIR`: one folder per connection, `cam<ID>-<peer ip>-<peer port>`,
//! holding `<seq, 6 digits>.bmp`, each the BMP exactly as received after
//! gunzip, or `<seq>.jpg`, each a JPEG body exactly as received.
//!
//! Files are written on the decode workers, never on the poll thread. Each
//! is written as `<seq>.<ext>.part` and renamed, so a file named `.bmp` or
//! `.jpg` is always complete, even if the viewer is killed mid-write.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use proto::wire::CameraId;

/// What a recorded file holds, which names its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Bmp,
    Jpeg,
}

impl FileKind {
    fn extension(self) -> &'static str {
        match self {
            FileKind::Bmp => "bmp",
            FileKind::Jpeg => "jpg",
        }
    }
}

/// The recording of one connection.
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
    peer: SocketAddr,
    /// Created on the first frame, when the camera id is known.
    dir: Option<PathBuf>,
}

impl Recorder {
    pub fn new(root: &Path, peer: SocketAddr) -> Recorder {
        Recorder {
            root: root.to_path_buf(),
            peer,
            dir: None,
        }
    }

    /// Writes frame `seq`, a `kind` file. The folder is named after the
    /// camera id of the first frame; a later change of id stays in the same
    /// folder.
    pub fn write(
        &mut self,
        camera_id: CameraId,
        seq: u64,
        file: &[u8],
        kind: FileKind,
    ) -> io::Result<PathBuf> {
        let dir = match &self.dir {
            Some(dir) => dir,
            None => self
                .dir
                .insert(create_dir(&self.root, camera_id, self.peer)?),
        };
        let ext = kind.extension();
        let path = dir.join(format!("{seq:06}.{ext}"));
        let part = dir.join(format!("{seq:06}.{ext}.part"));
        fs::write(&part, file).map_err(|e| with_path(e, &part))?;
        fs::rename(&part, &path).map_err(|e| with_path(e, &path))?;
        Ok(path)
    }
}

/// `root/cam<ID>-<ip>-<port>`. If that exists (a port reused across viewer
/// runs), a `-2`, `-3`, ... suffix keeps the older recording intact.
fn create_dir(root: &Path, camera_id: CameraId, peer: SocketAddr) -> io::Result<PathBuf> {
    let base = format!(
        "cam{camera_id}-{}-{}",
        peer.ip().to_canonical(),
        peer.port()
    );
    let mut n = 1u32;
    loop {
        let dir = match n {
            1 => root.join(&base),
            n => root.join(format!("{base}-{n}")),
        };
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(with_path(e, &dir)),
        }
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_cam_id_ip_port_and_six_digit_seq() {
        let root = std::env::temp_dir().join(format!("viewer-record-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let peer: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let mut rec = Recorder::new(&root, peer);
        let p0 = rec.write(3, 0, b"BM0", FileKind::Bmp).unwrap();
        let p1 = rec.write(3, 1, b"BM1", FileKind::Bmp).unwrap();
        assert_eq!(p0, root.join("cam3-127.0.0.1-41234/000000.bmp"));
        assert_eq!(fs::read(&p1).unwrap(), b"BM1");
        // Same peer again (port reuse): a fresh folder, the old one kept.
        let mut again = Recorder::new(&root, peer);
        let p = again.write(3, 0, b"BMx", FileKind::Bmp).unwrap();
        assert_eq!(p, root.join("cam3-127.0.0.1-41234-2/000000.bmp"));
        assert_eq!(fs::read(&p0).unwrap(), b"BM0");
        // IPv6 and IPv4-mapped peers.
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        let p = Recorder::new(&root, v6)
            .write(0, 7, b"x", FileKind::Bmp)
            .unwrap();
        assert_eq!(p, root.join("cam0-::1-5/000007.bmp"));
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:6".parse().unwrap();
        let p = Recorder::new(&root, mapped)
            .write(1, 0, b"\xFF\xD8\xFF", FileKind::Jpeg)
            .unwrap();
        assert_eq!(p, root.join("cam1-10.0.0.5-6/000000.jpg"));
        fs::remove_dir_all(&root).unwrap();
    }
}
