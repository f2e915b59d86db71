//! `Emulator`: one software remapping unit, its register file, caches, fault
//! log and invalidation queue behind one lock.
//!
//! The lock makes `&Emulator` usable from several threads at once: a vCPU
//! (or test) thread performing register accesses through
//! [`Mmio`](vtd_regs::Mmio) for `&Emulator`, a device thread calling
//! [`Emulator::translate`], and a sidecore thread calling
//! [`Emulator::process`]. The embedder's [`Hook`] lives behind the same
//! lock, so what it does for an invalidation is atomic with it.

use vtd_regs::regs::{
    Ccmd, EventMessage, Fsts, Gsts, Ics, IotlbInv, Iqa, Iqercd, Iqh, Iqt, Irta, Iva, Rtaddr,
};
use vtd_regs::{PhysMem, SourceId};
use vtd_tables::{ContextInfo, Translation, WalkLimits};

use crate::config::{ConfigError, EmuConfig};
use crate::context_cache::ContextCache;
use crate::counters::Counters;
use crate::events::EventSource;
use crate::fault_log::FaultLog;
use crate::hook::{Hook, NoHook, UnitView};
use crate::iec::InterruptEntryCache;
use crate::iotlb::Iotlb;
use crate::scalable::ScalableState;

/// How many devices can be given a misbehaving device-TLB
/// ([`Emulator::set_device_tlb_response`]).
pub const MAX_ATS_DEVICES: usize = 8;

/// How a device answers a device-TLB invalidation (§6.5.2.5, §6.5.2.10),
/// for testing a driver's handling of ITE and ICE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DevTlbResponse {
    /// Completes normally (the default for every device).
    Complete,
    /// Never completes: the unit reports an invalidation time-out (FSTS.ITE,
    /// IQERCD.ITESID) and stops processing the queue until ITE is cleared.
    TimeOut,
    /// Answers with an invalid completion: the unit reports FSTS.ICE and
    /// IQERCD.ICESID and goes on.
    InvalidCompletion,
}

/// Everything the lock protects.
#[derive(Debug)]
pub(crate) struct State<const I: usize, const C: usize, H> {
    pub(crate) cfg: EmuConfig,
    pub(crate) limits: WalkLimits,
    pub(crate) gsts: Gsts,
    /// RTADDR as software wrote it.
    pub(crate) rtaddr: Rtaddr,
    /// The root table pointer latched by the last SRTP.
    pub(crate) root: Rtaddr,
    pub(crate) ccmd: Ccmd,
    pub(crate) iva: Iva,
    pub(crate) iotlb_reg: IotlbInv,
    /// IQE, ICE and ITE (PFO, PPF and FRI come from `faults`).
    pub(crate) queue_errors: Fsts,
    pub(crate) iqercd: Iqercd,
    pub(crate) faults: FaultLog,
    pub(crate) fault_event: EventSource,
    pub(crate) inv_event: EventSource,
    pub(crate) iqh: Iqh,
    pub(crate) iqt: Iqt,
    pub(crate) iqa: Iqa,
    pub(crate) ics: Ics,
    pub(crate) irta: Irta,
    /// The interrupt remapping table pointer latched by the last SIRTP.
    pub(crate) irta_active: Irta,
    pub(crate) iotlb: Iotlb<Translation, I>,
    pub(crate) contexts: ContextCache<ContextInfo, C>,
    /// Scalable-mode limits and caches.
    pub(crate) scalable: ScalableState,
    pub(crate) iec: InterruptEntryCache,
    pub(crate) counters: Counters,
    pub(crate) ats: [Option<(SourceId, DevTlbResponse)>; MAX_ATS_DEVICES],
    /// The embedder's hook.
    pub(crate) hook: H,
}

impl<const I: usize, const C: usize, H> State<I, C, H> {
    fn new(cfg: EmuConfig, hook: H) -> Self {
        Self {
            cfg,
            limits: WalkLimits::new(cfg.cap, cfg.ecap, cfg.host_address_width.bits()),
            gsts: Gsts(0),
            rtaddr: Rtaddr(0),
            root: Rtaddr(0),
            ccmd: Ccmd(0),
            iva: Iva(0),
            iotlb_reg: IotlbInv(0),
            queue_errors: Fsts(0),
            iqercd: Iqercd(0),
            faults: FaultLog::new(cfg.cap.nfr().count()),
            fault_event: EventSource::new(),
            inv_event: EventSource::new(),
            iqh: Iqh(0),
            iqt: Iqt(0),
            iqa: Iqa(0),
            ics: Ics(0),
            irta: Irta(0),
            irta_active: Irta(0),
            iotlb: Iotlb::new(cfg.iotlb_entries, cfg.iotlb_ways),
            contexts: ContextCache::new(cfg.context_cache_entries, cfg.context_cache_ways),
            scalable: ScalableState::new(&cfg),
            iec: InterruptEntryCache::new(),
            counters: Counters::default(),
            ats: [None; MAX_ATS_DEVICES],
            hook,
        }
    }

    /// What a hook sees of the unit over `mem`, and the hook: borrowed
    /// together, so the hook can be called with the view.
    pub(crate) fn hook_and_view<'a, M: ?Sized>(
        &'a mut self,
        mem: &'a M,
    ) -> (&'a mut H, UnitView<'a, M>) {
        let view = UnitView {
            mem,
            config: &self.cfg,
            status: self.gsts,
            root: self.root,
            interrupt_table: self.irta_active,
        };
        (&mut self.hook, view)
    }

    /// The response `sid`'s device-TLB gives.
    pub(crate) fn ats_response(&self, sid: SourceId) -> DevTlbResponse {
        self.ats
            .iter()
            .flatten()
            .find(|(s, _)| *s == sid)
            .map_or(DevTlbResponse::Complete, |(_, r)| *r)
    }
}

/// A software VT-d remapping unit over the memory `M` it reads tables and
/// the invalidation queue from, with an IOTLB of at most `IOTLB` entries and
/// a context cache of at most `CONTEXTS` (the configuration picks how many
/// are used), telling the hook `H` what it executes ([`NoHook`] unless it
/// is embedded, see [`Emulator::with_hook`]).
///
/// Register accesses go through [`Mmio`](vtd_regs::Mmio), implemented for
/// `Emulator` and for `&Emulator`; DMA goes through
/// [`translate`](Self::translate).
///
/// The caches are stored inline, about 40 bytes per IOTLB entry: with the
/// default capacities an `Emulator` is about 45 KiB, built on the stack by
/// [`new`](Self::new). On small kernel stacks choose smaller `IOTLB` and
/// `CONTEXTS`, or place the value in a `static` or on the heap.
#[derive(Debug)]
pub struct Emulator<M, const IOTLB: usize = 1024, const CONTEXTS: usize = 64, H = NoHook> {
    pub(crate) mem: M,
    pub(crate) state: spin::Mutex<State<IOTLB, CONTEXTS, H>>,
}

impl<M: PhysMem> Emulator<M> {
    /// A unit in its reset state (translation, queued invalidation and
    /// interrupt remapping disabled, event interrupts masked), configured by
    /// `cfg`, over `mem`, with the default cache capacities. Other
    /// capacities: [`with_caches`](Emulator::with_caches).
    pub fn new(mem: M, cfg: EmuConfig) -> Result<Self, ConfigError> {
        Self::with_hook(mem, cfg, NoHook)
    }
}

impl<M: PhysMem, const I: usize, const C: usize> Emulator<M, I, C> {
    /// [`new`](Emulator::new) with an IOTLB of at most `I` entries and a
    /// context cache of at most `C`: `Emulator::<_, 64, 16>::with_caches`.
    pub fn with_caches(mem: M, cfg: EmuConfig) -> Result<Self, ConfigError> {
        Self::with_hook(mem, cfg, NoHook)
    }
}

impl<M: PhysMem, const I: usize, const C: usize, H: Hook<M>> Emulator<M, I, C, H> {
    /// A unit like [`new`](Emulator::new)'s that tells `hook` what it
    /// executes (see [`crate::hook`]).
    pub fn with_hook(mem: M, cfg: EmuConfig, hook: H) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut state = State::new(cfg, hook);
        state.announce(&mem, crate::hook::Change::Reset);
        Ok(Self { mem, state: spin::Mutex::new(state) })
    }

    /// Runs `f` on the hook, with the unit locked (no register access,
    /// invalidation or translation runs meanwhile).
    pub fn with_hook_mut<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.state.lock().hook)
    }

    /// The hook, for an owner with exclusive access.
    pub fn hook_mut(&mut self) -> &mut H {
        &mut self.state.get_mut().hook
    }

    /// The configuration.
    pub fn config(&self) -> EmuConfig {
        self.state.lock().cfg
    }

    /// The memory the unit reads and writes.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let st = self.state.lock();
        let mut c = st.counters;
        c.iotlb = st.iotlb.stats();
        c.context_cache = st.contexts.stats();
        c.interrupt_entry_cache = st.iec.stats();
        c.interrupts = st.fault_event.delivered() + st.inv_event.delivered();
        c
    }

    /// Zeroes the counters (e.g. between a benchmark's warm-up and its
    /// measurement); the caches keep their contents.
    pub fn reset_counters(&self) {
        let mut st = self.state.lock();
        st.counters = Counters::default();
        st.iotlb.reset_stats();
        st.contexts.reset_stats();
        st.iec.reset_stats();
        st.fault_event.reset_delivered();
        st.inv_event.reset_delivered();
    }

    /// FSTS as software would read it (without counting a register read).
    pub fn fault_status(&self) -> Fsts {
        self.state.lock().fsts()
    }

    /// Translations held in the IOTLB.
    pub fn iotlb_entries(&self) -> usize {
        self.state.lock().iotlb.len()
    }

    /// Context entries held in the context cache.
    pub fn context_cache_entries(&self) -> usize {
        self.state.lock().contexts.len()
    }

    /// Takes the fault event message the unit sent (FEDATA/FEADDR), if any.
    pub fn take_fault_event(&self) -> Option<EventMessage> {
        self.state.lock().fault_event.take()
    }

    /// Takes the invalidation completion event message the unit sent
    /// (IEDATA/IEADDR), if any.
    pub fn take_invalidation_event(&self) -> Option<EventMessage> {
        self.state.lock().inv_event.take()
    }

    /// Makes `source`'s device-TLB answer invalidations with `response`.
    /// Returns `false` if [`MAX_ATS_DEVICES`] other devices already have a
    /// response set.
    pub fn set_device_tlb_response(&self, source: SourceId, response: DevTlbResponse) -> bool {
        let mut st = self.state.lock();
        let slot = match st.ats.iter().position(|e| e.is_some_and(|(s, _)| s == source)) {
            Some(i) => Some(i),
            None => st.ats.iter().position(Option::is_none),
        };
        match slot {
            Some(i) => {
                st.ats[i] = Some((source, response));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticMemory;

    #[test]
    fn size_is_as_documented() {
        let size = core::mem::size_of::<Emulator<&StaticMemory>>();
        // With the scalable-mode caches (about 8 KiB, fixed) and the
        // interrupt entry cache.
        assert!((48 << 10..=60 << 10).contains(&size), "{size}");
        let small = core::mem::size_of::<Emulator<&StaticMemory, 16, 4>>();
        assert!(small < 12 << 10, "{small}");
    }
}
