//! Loads the PT_LOAD segments of a static ELF64 image into guest RAM,
//! parsed by the `object` crate.

use std::io;

use object::LittleEndian;
use object::elf::{EM_X86_64, FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};

use crate::memory::GuestRam;

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Copies every PT_LOAD segment to its physical address (zero-filling the
/// BSS tail) and returns the entry point.
pub fn load(image: &[u8], ram: &GuestRam) -> io::Result<u64> {
    let header = FileHeader64::<LittleEndian>::parse(image).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    if header.e_machine(endian) != EM_X86_64 {
        return Err(bad("not an x86-64 image"));
    }
    for ph in header.program_headers(endian, image).map_err(bad)? {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let data = ph.data(endian, image).map_err(|()| bad("segment past the end of the image"))?;
        let paddr = ph.p_paddr(endian);
        let (filesz, memsz) = (ph.p_filesz(endian), ph.p_memsz(endian));
        let bss = usize::try_from(memsz.saturating_sub(filesz)).map_err(|_| bad("p_memsz"))?;
        if bss > ram.size() {
            return Err(bad("segment larger than guest RAM"));
        }
        ram.write(paddr, data)?;
        let bss_at = paddr.checked_add(filesz).ok_or_else(|| bad("p_paddr"))?;
        ram.write(bss_at, &vec![0; bss])?;
    }
    Ok(header.e_entry(endian))
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
        let truncated = GUEST[..64].to_vec();
        assert!(load(&truncated, &ram).is_err());
        // Another machine's image is refused.
        let mut other = GUEST.to_vec();
        other[18] = 0x3e ^ 0xff;
        assert!(load(&other, &ram).is_err());
        // A segment placed past the end of RAM is refused, not written.
        assert!(load(GUEST, &GuestRam::new(4096).expect("mmap")).is_err());
    }
}
