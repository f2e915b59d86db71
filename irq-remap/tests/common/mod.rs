//! A software VT-d with interrupt remapping, whose interrupt entry cache
//! invalidations a test can hold back (the hook stalls them), a queued
//! invalidator on it, and a table.
#![allow(dead_code, unreachable_pub)] // reason: shared by several test binaries

use invalidation::QueuedInvalidator;
use irq_remap::IrTable;
use vtd_emu::hook::{Hook, Invalidation, Outcome, UnitView};
use vtd_emu::mem::HeapMemory;
use vtd_emu::{EmuConfig, Emulator, SimFrameAllocator};
use vtd_regs::irq::InterruptMode;
use vtd_regs::regs::QueueSize;
use vtd_regs::{PhysAddr, PollBudget, RemappingUnit};

/// Stalls interrupt entry cache invalidations while `hold` is set, and
/// records every invalidation and state change it is told of.
#[derive(Debug, Default)]
pub struct Holder {
    pub hold: bool,
    pub seen: Vec<String>,
}

impl<M: ?Sized> Hook<M> for Holder {
    fn invalidate(&mut self, _: &UnitView<'_, M>, inv: Invalidation) -> Outcome {
        if self.hold && matches!(inv, Invalidation::InterruptEntries(_)) {
            return Outcome::Stall;
        }
        self.seen.push(format!("{inv:?}"));
        Outcome::Complete
    }

    fn changed(&mut self, _: &UnitView<'_, M>, change: vtd_emu::hook::Change) {
        self.seen.push(format!("{change:?}"));
    }
}

pub type Mem = &'static HeapMemory;
pub type Emu = Emulator<Mem, 64, 16, Holder>;
pub type Inv = QueuedInvalidator<&'static Emu, Mem>;

pub struct Bed<const W: usize> {
    pub mem: Mem,
    pub emu: &'static Emu,
    pub inv: Inv,
    pub table: IrTable<Mem, W>,
}

impl<const W: usize> Bed<W> {
    /// QEMU's unit with interrupt remapping (x2APIC too if `mode` is),
    /// brought up with a table of `64 * W` entries.
    pub fn new(mode: InterruptMode) -> Self {
        let cfg = EmuConfig::qemu().with_interrupt_remapping(true, mode.eime());
        Self::with_config(cfg, mode)
    }

    pub fn with_config(cfg: EmuConfig, mode: InterruptMode) -> Self {
        let mem: Mem = Box::leak(Box::new(HeapMemory::new(2 << 20)));
        let frames: &'static SimFrameAllocator<Mem> = Box::leak(Box::new(SimFrameAllocator::new(
            mem,
            PhysAddr::new(0x1000),
            PhysAddr::new(2 << 20),
        )));
        let emu: &'static Emu =
            Box::leak(Box::new(Emulator::with_hook(mem, cfg, Holder::default()).unwrap()));
        // A short budget: a held invalidation times out quickly.
        let unit = RemappingUnit::with_budget(emu, PollBudget::new(1000)).unwrap();
        let size = QueueSize::from_order(0).unwrap();
        let mut inv = QueuedInvalidator::new(unit, mem, frames, size).map_err(|r| r.error).unwrap();
        let mut table = IrTable::new(mem, frames, mode).unwrap();
        table.enable(&mut inv).unwrap();
        Self { mem, emu, inv, table }
    }

    pub fn hold(&self, on: bool) {
        self.emu.with_hook_mut(|h| h.hold = on);
        if !on {
            self.emu.process();
        }
    }
}
