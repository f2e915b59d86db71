//! The VT-d register page as the guest sees it.

/// Bytes in the page (VT-d registers of one remapping unit, §10.4).
pub const PAGE_SIZE: usize = 4096;

/// A plain register file: reads return what was last written, any width
/// and alignment. The KVM probe (`--probe`) serves the guest's register
/// page with it; the evaluation's runs use the vIOMMU
/// ([`crate::guest_viommu`]).
#[derive(Clone, Debug)]
pub struct RegisterPage {
    bytes: Vec<u8>,
}

impl Default for RegisterPage {
    fn default() -> Self {
        Self { bytes: vec![0; PAGE_SIZE] }
    }
}

impl RegisterPage {
    /// Fills `data` from `offset`; bytes past the page read as 0xFF (like
    /// an unclaimed bus read).
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.slot(offset, i).and_then(|at| self.bytes.get(at)).copied().unwrap_or(0xff);
        }
    }

    /// Stores `data` at `offset`; bytes past the page are dropped.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            if let Some(slot) = self.slot(offset, i).and_then(|at| self.bytes.get_mut(at)) {
                *slot = byte;
            }
        }
    }

    fn slot(&self, offset: u64, i: usize) -> Option<usize> {
        usize::try_from(offset).ok()?.checked_add(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_writes_of_any_width() {
        let mut page = RegisterPage::default();
        page.write(0x3c, &0x1234_5678u32.to_le_bytes());
        let mut word = [0; 4];
        page.read(0x3c, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0x1234_5678);
        let mut byte = [0; 1];
        page.read(0x3d, &mut byte);
        assert_eq!(byte[0], 0x56);
        page.write(0x40, &u64::MAX.to_le_bytes());
        let mut qword = [0; 8];
        page.read(0x40, &mut qword);
        assert_eq!(u64::from_le_bytes(qword), u64::MAX);
    }

    #[test]
    fn out_of_page_accesses_are_harmless() {
        let mut page = RegisterPage::default();
        page.write(0xffe, &[1, 2, 3, 4]);
        let mut data = [0; 4];
        page.read(0xffe, &mut data);
        assert_eq!(data, [1, 2, 0xff, 0xff]);
        page.write(u64::MAX, &[9]);
        page.read(u64::MAX, &mut data[..1]);
        assert_eq!(data[0], 0xff);
    }
}
