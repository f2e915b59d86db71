//! The initramfs archive format: cpio "newc" (SVR4 with no CRC), which the
//! kernel unpacks into its root file system (Linux's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).

/// A newc archive being written.
#[derive(Debug, Default)]
pub(crate) struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

impl Cpio {
    /// A directory.
    pub(crate) fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), b"");
    }

    /// A regular file with permission bits `perm`.
    pub(crate) fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub(crate) fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | 0o600, 1, (major, minor), b"");
    }

    /// The archive, closed by its trailer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"");
        self.out
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            path.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!");
        let out = c.finish();
        // 110-byte header, "init\0" padded to 116, 2 data bytes padded to 120.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000081ed");
        assert_eq!(&out[54..62], b"00000002", "file size");
        assert_eq!(&out[94..102], b"00000005", "name size with its NUL");
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..118], b"#!");
        assert_eq!(&out[120..126], b"070701");
        assert_eq!(&out[230..241], b"TRAILER!!!\0");
        assert_eq!(out.len() % 4, 0);
    }
}
