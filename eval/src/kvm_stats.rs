//! KVM's binary statistics (`KVM_GET_STATS_FD`, Linux 5.14+): named
//! counters of a VM or vCPU, e.g. exits and emulated instructions.

use std::{
    fs::File,
    io,
    os::{fd::FromRawFd, unix::fs::FileExt},
};

/// `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: libc::c_ulong = 0xae_ce;

/// Reads every counter of the KVM object behind `fd` (a VM or vCPU fd).
pub fn read(fd: std::os::fd::RawFd) -> io::Result<Vec<(String, Vec<u64>)>> {
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd.
    let stats_fd = unsafe { libc::ioctl(fd, KVM_GET_STATS_FD as _) };
    if stats_fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `stats_fd` is a fresh fd we own.
    let file = unsafe { File::from_raw_fd(stats_fd) };
    let mut header = [0u8; 24];
    file.read_exact_at(&mut header, 0)?;
    let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let name_size = word(&header, 4) as usize;
    let num_desc = word(&header, 8) as usize;
    let desc_offset = u64::from(word(&header, 16));
    let data_offset = u64::from(word(&header, 20));
    let desc_len = 16 + name_size;
    let mut descs = vec![0u8; desc_len * num_desc];
    file.read_exact_at(&mut descs, desc_offset)?;
    let mut out = Vec::with_capacity(num_desc);
    for d in descs.chunks_exact(desc_len) {
        let size = usize::from(u16::from_le_bytes([d[6], d[7]]));
        let offset = u64::from(word(d, 8));
        let name_bytes = &d[16..];
        let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
        let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
        let mut data = vec![0u8; size * 8];
        file.read_exact_at(&mut data, data_offset + offset)?;
        let values = data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        out.push((name, values));
    }
    Ok(out)
}
