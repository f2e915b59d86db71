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
    /// Backend map calls (one per contiguous range).
    pub map_calls: u64,
    /// Backend unmap calls.
    pub unmap_calls: u64,
    /// Backend completions asked for (at most one per shadow domain per
    /// guest invalidation).
    pub completions: u64,
    /// Guest pages mapped in the host (each pinned while mapped, by the
    /// backend or its kernel).
    pub pins: u64,
    /// Guest pages whose unmap the backend completed (each unpinned after
    /// the host IOMMU dropped it).
    pub unpins: u64,
    /// Guest pages the guest's tables map outside its RAM (never mapped).
    pub outside_ram: u64,
    /// Pages not shadowed because the guest's page quota, or (without
    /// `alloc`) a shadow domain's capacity, was reached.
    pub quota_drops: u64,
    /// Device attachments (host context changes).
    pub context_changes: u64,
    /// Guest domains not shadowed because the domain quota was reached.
    pub domain_drops: u64,
    /// Failures of the backend (a bug or an exhausted host if ever
    /// non-zero).
    pub host_errors: u64,
    /// Guest interrupt remapping table entries read (interrupt entry cache
    /// invalidations shadowed, `viommu::interrupts`).
    pub interrupt_entries_read: u64,
    /// Host interrupt routes set or changed.
    pub interrupt_routes_set: u64,
    /// Host interrupt routes cleared.
    pub interrupt_routes_cleared: u64,
    /// Routes not set because (without `alloc`)
    /// [`MAX_ROUTES`](crate::interrupts::MAX_ROUTES) were held.
    pub interrupt_route_drops: u64,
}
