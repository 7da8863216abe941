//! A camera's identity in a TLS client certificate (issue 15).
//!
//! With mutual TLS, a camera node's certificate may name the camera ids it
//! sends as DNS names in its subject alternative names:
//!
//! ```text
//! camstream-camera-3.invalid      camera id 3 (decimal, 0-255, no leading zeros)
//! ```
//!
//! The viewer then refuses a frame whose header carries any id the
//! certificate does not name, so a stolen node can only impersonate itself.
//! A certificate naming no camera (only ordinary host names, or none) may
//! send any id: the CA vouches for the node, nothing more.
//!
//! Why a DNS name under `.invalid`: every tool can write one (`openssl req
//! -addext subjectAltName=DNS:camstream-camera-3.invalid`, rcgen, any CA),
//! every TLS library parses it, and `.invalid` is reserved (RFC 6761), so it
//! can never be a real host that the certificate would also vouch for. A
//! node with several cameras lists several names. Names are compared in
//! ASCII lowercase, as DNS names are.
//!
//! The viewer reads a verified client certificate's ids with
//! [`certificate_camera_ids`]; the agent reads its own certificate's the
//! same way, to refuse at start an id its certificate does not name.

use proto::wire::CameraId;
use rustls::pki_types::CertificateDer;

/// What comes before the decimal id.
pub const CAMERA_NAME_PREFIX: &str = "camstream-camera-";
/// What comes after it.
pub const CAMERA_NAME_SUFFIX: &str = ".invalid";

/// The DNS name that names camera `id` in a certificate.
pub fn camera_dns_name(id: CameraId) -> String {
    format!("{CAMERA_NAME_PREFIX}{id}{CAMERA_NAME_SUFFIX}")
}

/// The camera id a DNS name stands for, if it is one of ours
/// (`camstream-camera-N.invalid`, N in 0..=255 written without leading
/// zeros); `None` for any other name.
pub fn camera_id_of_dns_name(name: &str) -> Option<CameraId> {
    let lower = name.to_ascii_lowercase();
    let digits = lower
        .strip_prefix(CAMERA_NAME_PREFIX)?
        .strip_suffix(CAMERA_NAME_SUFFIX)?;
    let canonical = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok()
}

/// The camera ids a certificate's DNS names name; empty when it names none
/// or cannot be parsed (callers have had rustls verify it already, and a
/// certificate that names no camera may send any id).
pub fn certificate_camera_ids(cert: &CertificateDer) -> CameraIds {
    webpki::EndEntityCert::try_from(cert)
        .map(|cert| CameraIds::from_dns_names(cert.valid_dns_names()))
        .unwrap_or_default()
}

/// A set of camera ids, one bit per id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CameraIds([u64; 4]);

impl CameraIds {
    /// The ids named among `dns_names` (other names are ignored); empty if
    /// none is.
    pub fn from_dns_names<'a>(dns_names: impl IntoIterator<Item = &'a str>) -> CameraIds {
        let mut ids = CameraIds::default();
        for id in dns_names.into_iter().filter_map(camera_id_of_dns_name) {
            ids.insert(id);
        }
        ids
    }

    /// Adds camera `id` to the set.
    pub fn insert(&mut self, id: CameraId) {
        self.0[usize::from(id / 64)] |= 1 << (id % 64);
    }

    /// True when camera `id` is in the set.
    pub fn contains(&self, id: CameraId) -> bool {
        self.0[usize::from(id / 64)] & (1 << (id % 64)) != 0
    }

    /// True when the set names no camera.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = CameraId> + '_ {
        (0..=CameraId::MAX).filter(|&id| self.contains(id))
    }
}

/// `3`, `3, 7`: for log lines.
impl std::fmt::Display for CameraIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, id) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_round_trips_through_its_name() {
        for id in 0..=CameraId::MAX {
            assert_eq!(camera_id_of_dns_name(&camera_dns_name(id)), Some(id));
        }
        assert_eq!(camera_dns_name(3), "camstream-camera-3.invalid");
    }

    #[test]
    fn names_compare_in_ascii_lowercase() {
        assert_eq!(
            camera_id_of_dns_name("CamStream-Camera-42.INVALID"),
            Some(42)
        );
    }

    /// A certificate must not name camera 3 as `03`, `+3` or `3.`: one id,
    /// one spelling, so a reader of the certificate sees what the viewer sees.
    #[test]
    fn only_the_canonical_spelling_names_a_camera() {
        for bad in [
            "camstream-camera-.invalid",
            "camstream-camera-03.invalid",
            "camstream-camera-+3.invalid",
            "camstream-camera-256.invalid",
            "camstream-camera-1000.invalid",
            "camstream-camera-3.invalid.",
            "camstream-camera-3.example",
            "camstream-camera-3",
            "x.camstream-camera-3.invalid",
            "camstream-camera- 3.invalid",
            "workstation.local",
        ] {
            assert_eq!(camera_id_of_dns_name(bad), None, "{bad}");
        }
        assert_eq!(camera_id_of_dns_name("camstream-camera-0.invalid"), Some(0));
        assert_eq!(
            camera_id_of_dns_name("camstream-camera-255.invalid"),
            Some(255)
        );
    }

    #[test]
    fn a_set_holds_the_named_ids_and_ignores_other_names() {
        let ids = CameraIds::from_dns_names([
            "pi-kitchen.local",
            "camstream-camera-3.invalid",
            "camstream-camera-255.invalid",
            "camstream-camera-64.invalid",
        ]);
        assert_eq!(ids.iter().collect::<Vec<_>>(), [3, 64, 255]);
        assert!(ids.contains(3) && !ids.contains(4) && !ids.contains(0));
        assert_eq!(ids.to_string(), "3, 64, 255");
        assert!(CameraIds::from_dns_names(["pi.local"]).is_empty());
    }
}
