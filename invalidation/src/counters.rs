//! What an invalidator has cost: the numbers a benchmark reports. Under an
//! emulated IOMMU every queue-tail write and every register command is a VM
//! exit, so these are the exits invalidation causes.

use vtd_regs::desc::DescType;

/// Counts of an invalidator's work.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct InvalidatorCounters {
    /// Descriptors submitted, by type code (index 1 = context cache,
    /// 2 = IOTLB, 5 = invalidation wait, ...; VT-d §6.5.2).
    pub descriptors: [u64; 9],
    /// Writes of the queue tail register (IQT).
    pub tail_writes: u64,
    /// Register-based invalidation commands (CCMD or IOTLB_REG writes).
    pub register_commands: u64,
    /// Batches posted.
    pub batches: u64,
    /// Blocking waits for a ticket.
    pub waits: u64,
    /// Status polls made while waiting (memory reads of the wait status).
    pub wait_polls: u64,
    /// Queue errors seen (IQE, ITE, ICE).
    pub queue_errors: u64,
}

impl InvalidatorCounters {
    /// Descriptors submitted of one type.
    pub fn descriptors_of(&self, ty: DescType) -> u64 {
        self.descriptors.get(usize::from(ty.code())).copied().unwrap_or(0)
    }

    pub(crate) fn count_descriptor(&mut self, ty: DescType) {
        if let Some(n) = self.descriptors.get_mut(usize::from(ty.code())) {
            *n += 1;
        }
    }
}
