//! The invalidation queue registers (§6.5.2 and §10.4.21 to
//! §10.4.24): enabling and disabling queued invalidation, moving the tail,
//! reading the head, and the queue errors of FSTS/IQERCD.

use super::RemappingUnit;
use super::error::{Feature, Operation, UnitError};
use crate::ids::SourceId;
use crate::mmio::Mmio;
use crate::regs::{DescriptorWidth, Fsts, GlobalBits, Iqa, Iqercd, Iqh, Iqt, QueueErrorInfo};

/// The invalidation queue errors FSTS reported, with IQERCD's detail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueError {
    /// FSTS.IQE: the descriptor at `head` could not be processed, and why.
    /// The unit stops fetching until the error is cleared.
    pub queue: Option<QueueErrorInfo>,
    /// IQH at the time of the error: the offending descriptor.
    pub head: Iqh,
    /// FSTS.ICE: a device-TLB invalidation completion from this device was
    /// invalid.
    pub completion: Option<SourceId>,
    /// FSTS.ITE: a device-TLB invalidation to this device timed out.
    pub timeout: Option<SourceId>,
}

impl<M: Mmio> RemappingUnit<M> {
    /// Enables queued invalidation with the queue `iqa` describes: writes
    /// IQT = 0, then IQA, then GCMD.QIE, and waits for GSTS.QIES (§10.4.23). Needs ECAP.QI, and ECAP.SMTS for 256-bit descriptors. Fails
    /// with [`UnitError::QueuedInvalidationEnabled`] if the queue is already on.
    pub fn enable_queued_invalidation(&mut self, iqa: Iqa) -> Result<(), UnitError> {
        if !self.ecap.qi() {
            return Err(UnitError::Unsupported(Feature::QueuedInvalidation));
        }
        if iqa.width() == DescriptorWidth::Bits256 && !self.ecap.smts() {
            return Err(UnitError::Unsupported(Feature::ScalableMode));
        }
        if self.status().contains(GlobalBits::QIE) {
            return Err(UnitError::QueuedInvalidationEnabled);
        }
        self.mmio.write_reg(Iqt(0));
        self.mmio.write_reg(iqa);
        self.global_command(GlobalBits::QIE, true, true, Operation::QueuedInvalidation)?;
        self.queue = Some(iqa);
        Ok(())
    }

    /// Disables queued invalidation: waits until the unit has fetched every
    /// submitted descriptor (IQH = IQT), then clears GCMD.QIE and waits for
    /// GSTS.QIES to clear. Does nothing if it is already disabled.
    ///
    /// §6.5.2.9 has software end the queue with an invalidation wait
    /// descriptor before disabling it; QEMU's intel-iommu refuses (QIES
    /// stays set, so this times out) when the last descriptor it processed
    /// was not a wait. The `invalidation` crate's batches always end with
    /// one. A queue
    /// stopped by an invalidation queue error (see
    /// [`take_queue_error`](Self::take_queue_error)) does not drain, and this
    /// gives [`UnitError::Timeout`] with [`Operation::QueueDrain`].
    pub fn disable_queued_invalidation(&mut self) -> Result<(), UnitError> {
        if !self.status().contains(GlobalBits::QIE) {
            self.queue = None;
            return Ok(());
        }
        self.budget.wait(&self.mmio, Operation::QueueDrain, |m| {
            let (h, t): (Iqh, Iqt) = (m.read_reg(), m.read_reg());
            (h.byte_offset() == t.byte_offset()).then_some(())
        })?;
        self.global_command(GlobalBits::QIE, false, false, Operation::QueuedInvalidation)?;
        self.queue = None;
        Ok(())
    }

    /// The queue programmed while queued invalidation is enabled.
    pub const fn queue(&self) -> Option<Iqa> {
        self.queue
    }

    /// Hands the descriptors up to (not including) `index` to the unit: one
    /// IQT write. `index` must be below the queue's size.
    pub fn write_queue_tail(&mut self, index: usize) -> Result<(), UnitError> {
        let iqa = self.queue.ok_or(UnitError::QueueDisabled)?;
        let entries = iqa.entries();
        if index >= entries {
            return Err(UnitError::TailOutOfRange { index, entries });
        }
        self.mmio.write_reg(Iqt::from_index(index, iqa.width()));
        Ok(())
    }

    /// The index of the next descriptor the unit will fetch (IQH).
    pub fn queue_head(&self) -> Result<usize, UnitError> {
        let iqa = self.queue.ok_or(UnitError::QueueDisabled)?;
        Ok(self.mmio.read_reg::<Iqh>().index(iqa.width()))
    }

    /// Reads and clears the invalidation queue errors (FSTS.IQE, ICE, ITE
    /// with IQERCD). `None` if none is set.
    pub fn take_queue_error(&mut self) -> Option<QueueError> {
        let fsts: Fsts = self.mmio.read_reg();
        if !fsts.queue_error() {
            return None;
        }
        let rec: Iqercd = self.mmio.read_reg();
        let err = QueueError {
            queue: fsts.iqe().then(|| rec.iqei()),
            head: self.mmio.read_reg(),
            completion: fsts.ice().then(|| rec.icesid()),
            timeout: fsts.ite().then(|| rec.itesid()),
        };
        self.mmio.write_reg(fsts.clearing(Fsts::QUEUE_ERRORS));
        Some(err)
    }
}
