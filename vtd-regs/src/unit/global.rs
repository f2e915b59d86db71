//! The global command protocol (§10.4.4): one command bit per GCMD
//! write, the persistent enables carried over from GSTS, and a bounded wait
//! for the matching status bit.

use super::RemappingUnit;
use super::error::{Feature, Operation, UnitError};
use crate::addr::PhysAddr;
use crate::mmio::Mmio;
use crate::regs::{GlobalBits, Gsts, Irta, Rtaddr, TranslationTableMode};

impl<M: Mmio> RemappingUnit<M> {
    /// Issues one GCMD command: reads GSTS, writes it back without the
    /// one-shot bits and with `bit` set to `on`, then waits until GSTS shows
    /// `bit` as `expect`.
    pub(super) fn global_command(
        &mut self,
        bit: GlobalBits,
        on: bool,
        expect: bool,
        what: Operation,
    ) -> Result<(), UnitError> {
        let status: Gsts = self.mmio.read_reg();
        self.mmio.write_reg(GlobalBits::command(status, bit, on));
        self.budget.wait(&self.mmio, what, |m| {
            (m.read_reg::<Gsts>().contains(bit) == expect).then_some(())
        })
    }

    /// Sets or clears a persistent enable, doing nothing if GSTS already
    /// shows the requested state.
    fn set_enable(&mut self, bit: GlobalBits, on: bool, what: Operation) -> Result<(), UnitError> {
        if self.status().contains(bit) == on {
            return Ok(());
        }
        self.global_command(bit, on, on, what)
    }

    /// Points the unit at a root table: writes RTADDR, then GCMD.SRTP, and
    /// waits for GSTS.RTPS (§10.4.6). Scalable mode needs ECAP.SMTS.
    /// Software must then invalidate the context cache and the IOTLB
    /// globally (§6.5), unless CAP.ESRTPS says SRTP did.
    pub fn set_root_table(
        &mut self,
        table: PhysAddr,
        mode: TranslationTableMode,
    ) -> Result<(), UnitError> {
        if mode == TranslationTableMode::Scalable && !self.ecap.smts() {
            return Err(UnitError::Unsupported(Feature::ScalableMode));
        }
        self.mmio.write_reg(Rtaddr::new(table, mode));
        self.global_command(GlobalBits::SRTP, true, true, Operation::SetRootTable)
    }

    /// Enables DMA remapping: GCMD.TE, wait for GSTS.TES.
    pub fn enable_translation(&mut self) -> Result<(), UnitError> {
        self.set_enable(GlobalBits::TE, true, Operation::Translation)
    }

    /// Disables DMA remapping: clear GCMD.TE, wait for GSTS.TES to clear.
    pub fn disable_translation(&mut self) -> Result<(), UnitError> {
        self.set_enable(GlobalBits::TE, false, Operation::Translation)
    }

    /// Flushes the unit's internal write buffer (GCMD.WBF, wait for GSTS.WBFS
    /// to clear) if CAP.RWBF says software must; otherwise does nothing.
    pub fn write_buffer_flush(&mut self) -> Result<(), UnitError> {
        if !self.cap.rwbf() {
            return Ok(());
        }
        self.global_command(GlobalBits::WBF, true, false, Operation::WriteBufferFlush)
    }

    /// Points the unit at an interrupt remapping table: writes IRTA, then
    /// GCMD.SIRTP, and waits for GSTS.IRTPS (§10.4.30). Needs ECAP.IR,
    /// and ECAP.EIM for x2APIC mode (IRTA.EIME).
    pub fn set_interrupt_remap_table(&mut self, irta: Irta) -> Result<(), UnitError> {
        if !self.ecap.ir() {
            return Err(UnitError::Unsupported(Feature::InterruptRemapping));
        }
        if irta.eime() && !self.ecap.eim() {
            return Err(UnitError::Unsupported(Feature::ExtendedInterruptMode));
        }
        self.mmio.write_reg(irta);
        self.global_command(GlobalBits::SIRTP, true, true, Operation::SetInterruptRemapTable)
    }

    /// Enables or disables interrupt remapping (GCMD.IRE / GSTS.IRES).
    pub fn set_interrupt_remapping(&mut self, on: bool) -> Result<(), UnitError> {
        if on && !self.ecap.ir() {
            return Err(UnitError::Unsupported(Feature::InterruptRemapping));
        }
        self.set_enable(GlobalBits::IRE, on, Operation::InterruptRemapping)
    }

    /// Allows or blocks compatibility-format interrupts while interrupt
    /// remapping is on (GCMD.CFI / GSTS.CFIS).
    pub fn set_compatibility_format(&mut self, allow: bool) -> Result<(), UnitError> {
        self.set_enable(GlobalBits::CFI, allow, Operation::CompatibilityFormat)
    }
}
