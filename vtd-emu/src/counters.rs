//! Event counters a benchmark or test reads from the model: register
//! accesses by register, invalidation descriptors by type, table walks,
//! cache behaviour and faults.

use vtd_regs::regs::offset;

use crate::cache::CacheStats;
use crate::config::EmuConfig;

/// The registers the model counts accesses to, by name (VT-d §10.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // reason: the variants are the specification's register names
pub enum RegisterName {
    Ver,
    Cap,
    Ecap,
    Gcmd,
    Gsts,
    Rtaddr,
    Ccmd,
    Fsts,
    Fectl,
    Fedata,
    Feaddr,
    Feuaddr,
    Iqh,
    Iqt,
    Iqa,
    Ics,
    Iectl,
    Iedata,
    Ieaddr,
    Ieuaddr,
    Iqercd,
    Irta,
    /// IVA_REG, at ECAP.IRO.
    Iva,
    /// IOTLB_REG, at ECAP.IRO + 8.
    Iotlb,
    /// Any fault recording register, at CAP.FRO.
    Frcd,
    /// Anything else (reserved or unimplemented offsets).
    Other,
}

impl RegisterName {
    /// Number of names.
    pub const COUNT: usize = RegisterName::Other as usize + 1;

    /// The register containing byte `off` of a unit configured as `cfg`.
    pub fn at(cfg: &EmuConfig, off: usize) -> Self {
        let iva = cfg.ecap.iro().iva();
        let fro = cfg.cap.fro().byte_offset();
        let frcd_end = fro + usize::from(cfg.cap.nfr().count()) * 16;
        match off & !3 {
            o if (iva..iva + 8).contains(&o) => RegisterName::Iva,
            o if (iva + 8..iva + 16).contains(&o) => RegisterName::Iotlb,
            o if (fro..frcd_end).contains(&o) => RegisterName::Frcd,
            o => Self::fixed(o),
        }
    }

    fn fixed(o: usize) -> Self {
        use RegisterName::*;
        let wide = |base: usize| o == base || o == base + 4;
        match o {
            offset::VER => Ver,
            _ if wide(offset::CAP) => Cap,
            _ if wide(offset::ECAP) => Ecap,
            offset::GCMD => Gcmd,
            offset::GSTS => Gsts,
            _ if wide(offset::RTADDR) => Rtaddr,
            _ if wide(offset::CCMD) => Ccmd,
            offset::FSTS => Fsts,
            offset::FECTL => Fectl,
            offset::FEDATA => Fedata,
            offset::FEADDR => Feaddr,
            offset::FEUADDR => Feuaddr,
            _ if wide(offset::IQH) => Iqh,
            _ if wide(offset::IQT) => Iqt,
            _ if wide(offset::IQA) => Iqa,
            offset::ICS => Ics,
            offset::IECTL => Iectl,
            offset::IEDATA => Iedata,
            offset::IEADDR => Ieaddr,
            offset::IEUADDR => Ieuaddr,
            _ if wide(offset::IQERCD) => Iqercd,
            _ if wide(offset::IRTA) => Irta,
            _ => Other,
        }
    }
}

/// Number of descriptor type codes counted (the 7-bit type of §6.5.2 folded
/// to its low 4 bits; reserved types are counted as invalid).
pub const DESCRIPTOR_TYPES: usize = 16;

/// A snapshot of the model's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// 32-bit register reads, by register (a 64-bit access counts twice).
    pub reads: [u64; RegisterName::COUNT],
    /// 32-bit register writes, by register.
    pub writes: [u64; RegisterName::COUNT],
    /// Invalidation descriptors processed, by type code (§6.5.2: 1 context
    /// cache, 2 IOTLB, 3 device-TLB, 4 interrupt entry cache, 5 wait, ...).
    pub descriptors: [u64; DESCRIPTOR_TYPES],
    /// Descriptors rejected as malformed (IQE).
    pub invalid_descriptors: u64,
    /// Register-based invalidations performed (CCMD, IOTLB_REG).
    pub register_invalidations: u64,
    /// Context-entry lookups and second-level walks done in memory.
    pub walks: u64,
    /// Translation requests.
    pub translations: u64,
    /// IOTLB statistics.
    pub iotlb: CacheStats,
    /// Context-cache statistics.
    pub context_cache: CacheStats,
    /// Interrupt requests seen ([`Emulator::remap_interrupt`](crate::Emulator::remap_interrupt)).
    pub interrupt_requests: u64,
    /// Interrupt remapping table entries read from memory.
    pub irte_reads: u64,
    /// Interrupt entry cache statistics.
    pub interrupt_entry_cache: CacheStats,
    /// Interrupt requests blocked with a fault that was recorded (or lost
    /// to overflow): not those FPD suppressed.
    pub interrupt_faults: u64,
    /// Faults recorded in a fault recording register.
    pub faults_recorded: u64,
    /// Faults lost to primary fault overflow.
    pub faults_dropped: u64,
    /// Interrupts signalled (fault events and invalidation completion events).
    pub interrupts: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            reads: [0; RegisterName::COUNT],
            writes: [0; RegisterName::COUNT],
            descriptors: [0; DESCRIPTOR_TYPES],
            invalid_descriptors: 0,
            register_invalidations: 0,
            walks: 0,
            translations: 0,
            iotlb: CacheStats::default(),
            context_cache: CacheStats::default(),
            interrupt_requests: 0,
            irte_reads: 0,
            interrupt_entry_cache: CacheStats::default(),
            interrupt_faults: 0,
            faults_recorded: 0,
            faults_dropped: 0,
            interrupts: 0,
        }
    }
}

impl Counters {
    /// Reads of register `r`.
    pub fn reads_of(&self, r: RegisterName) -> u64 {
        self.reads[r as usize]
    }

    /// Writes of register `r`.
    pub fn writes_of(&self, r: RegisterName) -> u64 {
        self.writes[r as usize]
    }

    /// Descriptors processed of type code `ty` (0 for out-of-range codes).
    pub fn descriptors_of(&self, ty: u8) -> u64 {
        self.descriptors.get(usize::from(ty)).copied().unwrap_or(0)
    }

    /// All descriptors processed.
    pub fn descriptors_total(&self) -> u64 {
        self.descriptors.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_names_follow_the_layout() {
        let q = EmuConfig::qemu();
        assert_eq!(RegisterName::at(&q, 0x00), RegisterName::Ver);
        assert_eq!(RegisterName::at(&q, 0x0c), RegisterName::Cap);
        assert_eq!(RegisterName::at(&q, 0x1c), RegisterName::Gsts);
        assert_eq!(RegisterName::at(&q, 0x8c), RegisterName::Iqt);
        assert_eq!(RegisterName::at(&q, 0xf0), RegisterName::Iva);
        assert_eq!(RegisterName::at(&q, 0xfc), RegisterName::Iotlb);
        assert_eq!(RegisterName::at(&q, 0x228), RegisterName::Frcd);
        assert_eq!(RegisterName::at(&q, 0x230), RegisterName::Other);
        assert_eq!(RegisterName::at(&q, 0x30), RegisterName::Other);
        let c = Counters::default();
        assert_eq!(c.descriptors_of(200), 0);
        assert_eq!(c.reads_of(RegisterName::Other), 0);
    }
}
