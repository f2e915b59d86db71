//! The ACPI tables QEMU builds for the machine (its DMAR among them), read
//! through the firmware configuration device (fw_cfg, I/O ports 0x510 and
//! 0x511), as the firmware would before handing them to the OS.

use crate::error::{Error, Result};
use crate::qemu::Qemu;

/// fw_cfg's selector port (16-bit).
const SELECTOR: u16 = 0x510;
/// fw_cfg's data port (8-bit).
const DATA: u16 = 0x511;
/// The selector of the file directory.
const FILE_DIR: u16 = 0x19;
/// The file that holds every ACPI table but the RSDP.
const TABLES_FILE: &[u8] = b"etc/acpi/tables";
/// Bytes of an ACPI table header (signature, length, ... ).
const HEADER: usize = 36;

impl Qemu {
    /// The ACPI table with `signature` (e.g. `*b"DMAR"`) QEMU built for the
    /// machine, with its checksum filled in as the firmware's table loader
    /// does (QEMU leaves it to the firmware, and the machine runs none).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if QEMU has no such table, protocol errors.
    pub fn acpi_table(&self, signature: [u8; 4]) -> Result<Vec<u8>> {
        let q = self.qtest();
        let read = |n: usize| (0..n).map(|_| q.inb(DATA)).collect::<Result<Vec<u8>>>();
        q.outw(SELECTOR, FILE_DIR)?;
        let count = u32::from_be_bytes(read(4)?.try_into().unwrap_or_default());
        let mut file = None;
        for _ in 0..count {
            let entry = read(64)?;
            let name = entry[8..].split(|b| *b == 0).next().unwrap_or_default();
            if name == TABLES_FILE {
                let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
                file = Some((u16::from_be_bytes([entry[4], entry[5]]), size as usize));
            }
        }
        let missing = Error::InvalidArgument { what: "no such ACPI table in fw_cfg" };
        let (select, size) = file.ok_or(missing.clone())?;
        q.outw(SELECTOR, select)?;
        // Read on only until the table is whole.
        let mut blob = Vec::new();
        while blob.len() < size {
            blob.push(q.inb(DATA)?);
            if let Some(table) = find(&blob, signature) {
                let mut table = table.to_vec();
                table[9] = 0;
                table[9] = table.iter().fold(0u8, |s, b| s.wrapping_add(*b)).wrapping_neg();
                return Ok(table);
            }
        }
        Err(missing)
    }
}

/// The whole table with `signature` in the tables read so far.
fn find(blob: &[u8], signature: [u8; 4]) -> Option<&[u8]> {
    let at = blob.windows(4).position(|w| w == signature)?;
    let header = blob.get(at..at + HEADER)?;
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    blob.get(at..at.checked_add(len)?).filter(|_| len >= HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_whole_table_only() {
        let mut blob = vec![0u8; 10];
        blob.extend_from_slice(b"DMAR");
        blob.extend_from_slice(&40u32.to_le_bytes());
        blob.resize(10 + 39, 1);
        assert_eq!(find(&blob, *b"DMAR"), None, "one byte short");
        blob.push(2);
        assert_eq!(find(&blob, *b"DMAR").map(<[u8]>::len), Some(40));
        assert_eq!(find(&blob, *b"APIC"), None);
    }
}
