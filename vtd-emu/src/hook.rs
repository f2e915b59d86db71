//! The hook: how whoever embeds the unit learns what it executes.
//!
//! The unit is the one decoder of its registers and its invalidation queue:
//! an embedder (a vIOMMU shadowing the guest's mappings, a nested vIOMMU
//! forwarding the guest's invalidations, a test counting them) must not
//! read the queue or re-decode register writes a second time, because two
//! decoders drift apart and, in front of a guest, the drift is a protection
//! hole (a descriptor the guest rewrites between the two reads, an address
//! bit one masks and the other does not). Instead the unit calls a
//! [`Hook`] with what it decoded and validated, at the moment it executes
//! it:
//!
//! - [`Hook::invalidate`] for every invalidation it performs, queued
//!   (§6.5.2) or register-based (§6.5.1, §10.4.7, §10.4.8), with the scope
//!   as the unit performs it (domain ids cut to CAP.ND bits, a
//!   page-selective request on a unit without PSI widened to its domain,
//!   misaligned addresses decoded as hardware does, an interrupt entry
//!   cache index mask beyond ECAP.MHMV widened to global), *before* the unit
//!   drops its own cached entries and before anything after it completes:
//!   a later wait descriptor's status write (§6.5.2.8), or the clearing of
//!   CCMD.ICC or IOTLB_REG.IVT that software polls. The hook may refuse to
//!   let the invalidation complete yet ([`Outcome::Stall`]).
//! - [`Hook::changed`] for every change of the unit's state software
//!   commands through GCMD (§10.4.4): a root table latched by SRTP,
//!   translation, queued invalidation, interrupt remapping or
//!   compatibility format switched, an interrupt remapping table latched
//!   by SIRTP, before GSTS reports it; and once for the reset state the
//!   unit starts in.
//!
//! Both run with the unit's lock held, so nothing else happens to the unit
//! meanwhile (a device's DMA waits, a second register access waits), and
//! they must not call back into the same [`Emulator`](crate::Emulator).
//! They get a [`UnitView`]: the memory the unit reads (where the tables the
//! invalidation is about live) and the latched state.
//!
//! The enums are `#[non_exhaustive]`: the PASID-based invalidations of a
//! unit with ECAP.SMTS came through the same method when the model
//! implemented scalable mode, and later additions will too.

use vtd_regs::desc::{DevTlbInv, IecScope, PasidCacheScope, PasidDevTlbInv, PasidIotlbInv};
use vtd_regs::irq::RawIrte;
use vtd_regs::regs::rtaddr::TranslationTableMode;
use vtd_regs::regs::{GlobalBits, Gsts, Irta, Rtaddr};
use vtd_regs::{ContextScope, FaultReason, IotlbScope, PhysAddr, PhysMem};

use crate::config::EmuConfig;

/// An invalidation the unit is about to perform, decoded and validated.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum Invalidation {
    /// A context-cache invalidation (CCMD, §10.4.7; descriptor type 1,
    /// §6.5.2.1), of the scope performed.
    ContextCache(ContextScope),
    /// An IOTLB invalidation (IOTLB_REG, §10.4.8; descriptor type 2,
    /// §6.5.2.3), of the scope performed: second-level translations and
    /// paging-structure caches of the scope.
    Iotlb(IotlbScope),
    /// A device-TLB invalidation (descriptor type 3, §6.5.2.5), on a unit
    /// with ECAP.DT.
    DevTlb(DevTlbInv),
    /// An interrupt entry cache invalidation (descriptor type 4,
    /// §6.5.2.7), on a unit with ECAP.IR.
    InterruptEntries(IecScope),
    /// A PASID-cache invalidation (descriptor type 7, §6.5.2.2), on a unit
    /// with ECAP.SMTS, domain id cut to CAP.ND.
    PasidCache(PasidCacheScope),
    /// A PASID-based IOTLB invalidation (descriptor type 6, §6.5.2.4), on
    /// a unit with ECAP.SMTS, domain id cut to CAP.ND: first-stage and
    /// nested translations of one PASID.
    PasidIotlb(PasidIotlbInv),
    /// A PASID-based device-TLB invalidation (descriptor type 8,
    /// §6.5.2.6), on a unit with ECAP.SMTS and ECAP.DT.
    PasidDevTlb(PasidDevTlbInv),
}

/// A change of the unit's state software commanded through GCMD (§10.4.4),
/// or the reset state the unit starts in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Change {
    /// The unit is in its reset state (translation, queued invalidation and
    /// interrupt remapping off): told once, by
    /// [`Emulator::with_hook`](crate::Emulator::with_hook).
    Reset,
    /// SRTP latched this root table pointer (RTADDR with address bits at
    /// and above the host address width cleared, §10.4.6).
    RootTable(Rtaddr),
    /// Translation (DMA remapping) was enabled or disabled (GSTS.TES).
    Translation(bool),
    /// Queued invalidation was enabled or disabled (GSTS.QIES).
    QueuedInvalidation(bool),
    /// SIRTP latched this interrupt remapping table pointer (§10.4.29).
    InterruptTable(Irta),
    /// Interrupt remapping was enabled or disabled (GSTS.IRES).
    InterruptRemapping(bool),
    /// Compatibility-format interrupts were allowed or blocked (GSTS.CFIS).
    CompatibilityFormat(bool),
}

/// Whether an invalidation may complete.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum Outcome {
    /// The hook's side is done: the unit performs the invalidation and
    /// goes on.
    #[default]
    Complete,
    /// The hook's side is not done (say, the host IOMMU behind a vIOMMU
    /// did not confirm an unmap): the unit neither performs nor completes
    /// the invalidation, and reports no error. A queued one stays at the
    /// head of the queue (IQH points at it, nothing after it is fetched);
    /// a register-based one keeps CCMD.ICC or IOTLB_REG.IVT set. Either is
    /// tried again by [`Emulator::process`](crate::Emulator::process), and
    /// a queued one also by the next IQT write, a register-based one by the
    /// next read of its register (software polling it). Until then
    /// software waits, as for a slow unit (§6.5.2.8, §10.4.7).
    Stall,
}

/// What a hook sees of the unit: the memory it reads tables and the queue
/// from, and its latched state, as it will be once the current command
/// completes.
#[derive(Debug)]
pub struct UnitView<'a, M: ?Sized> {
    pub(crate) mem: &'a M,
    pub(crate) config: &'a EmuConfig,
    pub(crate) status: Gsts,
    pub(crate) root: Rtaddr,
    pub(crate) interrupt_table: Irta,
}

impl<M: ?Sized> UnitView<'_, M> {
    /// The memory the unit reads its tables and queue from.
    pub fn memory(&self) -> &M {
        self.mem
    }

    /// The unit's configuration.
    pub fn config(&self) -> &EmuConfig {
        self.config
    }

    /// GSTS: which features are enabled.
    pub fn status(&self) -> Gsts {
        self.status
    }

    /// Whether translation is enabled (GSTS.TES).
    pub fn translation_enabled(&self) -> bool {
        self.status.contains(GlobalBits::TE)
    }

    /// The root table pointer the last SRTP latched (§10.4.6).
    pub fn root(&self) -> Rtaddr {
        self.root
    }

    /// The root table the unit walks for DMA requests: the latched one, if
    /// translation is enabled and it is in legacy mode (the only mode the
    /// model implements).
    pub fn legacy_root(&self) -> Option<PhysAddr> {
        let legacy = self.root.mode() == Some(TranslationTableMode::Legacy);
        (self.translation_enabled() && legacy).then(|| self.root.table())
    }

    /// The scalable-mode root table the unit walks for DMA requests: the
    /// latched one, if translation is enabled, it is in scalable mode and
    /// the unit has ECAP.SMTS.
    pub fn scalable_root(&self) -> Option<PhysAddr> {
        let scalable = self.root.mode() == Some(TranslationTableMode::Scalable);
        (self.translation_enabled() && scalable && self.config.ecap.smts())
            .then(|| self.root.table())
    }

    /// The interrupt remapping table pointer the last SIRTP latched
    /// (§10.4.29).
    pub fn interrupt_table(&self) -> Irta {
        self.interrupt_table
    }

    /// Whether interrupt remapping is enabled (GSTS.IRES).
    pub fn interrupt_remapping_enabled(&self) -> bool {
        self.status.contains(GlobalBits::IRE)
    }
}

impl<M: PhysMem + ?Sized> UnitView<'_, M> {
    /// The entry at `index` of the latched interrupt remapping table, read
    /// from memory as the unit reads it on an interrupt entry cache miss
    /// (§5.1.3): fault 21h (`IrIndexBeyondTable`) for an index beyond
    /// IRTA.S or an entry above the host address width, 23h
    /// (`IrTableAccess`) for one the memory cannot give. One 16-byte read
    /// at most; decode it with [`RawIrte::decode`] in the table's mode
    /// (IRTA.EIME). What a vIOMMU shadowing the guest's table reads, so the
    /// table is located one way only.
    pub fn interrupt_entry(&self, index: u32) -> Result<RawIrte, FaultReason> {
        crate::interrupt::read_irte(
            self.mem,
            self.interrupt_table,
            self.config.host_width_mask(),
            index,
        )
    }
}

/// What the unit tells its embedder. Both methods have defaults that do
/// nothing, so a hook implements what it needs. `M` is the unit's memory.
pub trait Hook<M: ?Sized> {
    /// The unit is about to perform `inv` (see the [module](self) docs for
    /// when exactly). Return [`Outcome::Stall`] to hold it back.
    fn invalidate(&mut self, unit: &UnitView<'_, M>, inv: Invalidation) -> Outcome {
        let _ = (unit, inv);
        Outcome::Complete
    }

    /// Software changed the unit's state: `unit` shows the state after it.
    fn changed(&mut self, unit: &UnitView<'_, M>, change: Change) {
        let _ = (unit, change);
    }
}

/// The hook of a unit nobody embeds: does nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoHook;

impl<M: ?Sized> Hook<M> for NoHook {}
