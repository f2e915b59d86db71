//! Loads the PT_LOAD segments of a static ELF64 image into guest RAM.

use crate::memory::GuestRam;
use std::io;

const PT_LOAD: u32 = 1;

fn field<const N: usize>(image: &[u8], at: usize) -> io::Result<[u8; N]> {
    at.checked_add(N)
        .and_then(|end| image.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("truncated ELF"))
}

fn add(a: usize, b: usize) -> io::Result<usize> {
    a.checked_add(b).ok_or_else(|| bad("offset overflow"))
}

fn u16_at(image: &[u8], at: usize) -> io::Result<u16> {
    field::<2>(image, at).map(u16::from_le_bytes)
}
fn u32_at(image: &[u8], at: usize) -> io::Result<u32> {
    field::<4>(image, at).map(u32::from_le_bytes)
}
fn u64_at(image: &[u8], at: usize) -> io::Result<u64> {
    field::<8>(image, at).map(u64::from_le_bytes)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Copies every PT_LOAD segment to its physical address (zero-filling the
/// BSS tail) and returns the entry point.
pub fn load(image: &[u8], ram: &GuestRam) -> io::Result<u64> {
    if image.get(..4) != Some(b"\x7fELF".as_slice()) || image.get(4) != Some(&2) {
        return Err(bad("not an ELF64 image"));
    }
    let entry = u64_at(image, 24)?;
    let phoff = usize::try_from(u64_at(image, 32)?).map_err(|_| bad("phoff"))?;
    let phentsize = usize::from(u16_at(image, 54)?);
    let phnum = usize::from(u16_at(image, 56)?);
    for i in 0..phnum {
        let ph = add(phoff, i.checked_mul(phentsize).ok_or_else(|| bad("phentsize"))?)?;
        if u32_at(image, ph)? != PT_LOAD {
            continue;
        }
        let offset = usize::try_from(u64_at(image, add(ph, 8)?)?).map_err(|_| bad("p_offset"))?;
        let paddr = u64_at(image, add(ph, 24)?)?;
        let filesz = u64_at(image, add(ph, 32)?)?;
        let memsz = u64_at(image, add(ph, 40)?)?;
        let filesz_bytes = usize::try_from(filesz).map_err(|_| bad("p_filesz"))?;
        let data =
            image.get(offset..add(offset, filesz_bytes)?).ok_or_else(|| bad("segment past end"))?;
        ram.write(paddr, data)?;
        let bss = usize::try_from(memsz.saturating_sub(filesz)).map_err(|_| bad("p_memsz"))?;
        let bss_at = paddr.checked_add(filesz).ok_or_else(|| bad("p_paddr"))?;
        if bss > ram.size() {
            return Err(bad("segment larger than guest RAM"));
        }
        ram.write(bss_at, &vec![0; bss])?;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{abi, probe::GUEST};

    #[test]
    fn loads_the_guest_at_its_link_address() {
        let ram = GuestRam::new(abi::RAM_SIZE as usize).expect("mmap");
        assert_eq!(load(GUEST, &ram).expect("load"), abi::IMAGE_BASE);
        // The entry code is there, and so are the exception stubs.
        assert_ne!(ram.read_u64(abi::IMAGE_BASE).expect("read"), 0);
        assert_ne!(ram.read_u64(abi::VECTOR_STUBS).expect("read"), 0);
    }

    #[test]
    fn rejects_what_is_not_a_loadable_elf64() {
        let ram = GuestRam::new(1 << 20).expect("mmap");
        assert!(load(b"", &ram).is_err());
        assert!(load(b"\x7fELF\x01", &ram).is_err());
        let mut truncated = GUEST[..64].to_vec();
        assert!(load(&truncated, &ram).is_err());
        // A segment placed past the end of RAM is refused, not written.
        truncated = GUEST.to_vec();
        assert!(load(&truncated, &GuestRam::new(4096).expect("mmap")).is_err());
    }
}
