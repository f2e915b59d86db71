//! What a vIOMMU has done: the host-side work per guest operation that the
//! paper's cost breakdown (Amit et al. 2011, §6) is about.

/// Counts of one vIOMMU's work.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ViommuCounters {
    /// Register accesses emulated (each one a VM exit under
    /// trap-and-emulate, a polled change under the sidecore).
    pub register_accesses: u64,
    /// Guest invalidation requests shadowed (descriptors and register
    /// commands).
    pub invalidations_shadowed: u64,
    /// Range resynchronisations (guest table compared with the shadow).
    pub resyncs: u64,
    /// Scans stopped by their budget.
    pub scans_truncated: u64,
    /// Pages installed in the host table.
    pub pages_mapped: u64,
    /// Pages removed from the host table.
    pub pages_unmapped: u64,
    /// Pins taken.
    pub pins: u64,
    /// Pins dropped (each after the host invalidation completed).
    pub unpins: u64,
    /// Guest pages that could not be pinned (outside the guest's RAM).
    pub pin_failures: u64,
    /// Pages not shadowed because the guest's page quota, or a shadow
    /// domain's capacity (2048 pages), was reached.
    pub quota_drops: u64,
    /// Device attachments (host context entries written).
    pub context_changes: u64,
    /// Guest domains not shadowed because the domain quota was reached.
    pub domain_drops: u64,
    /// Failures of the host unit or its tables (a bug or an exhausted host
    /// if ever non-zero).
    pub host_errors: u64,
}
