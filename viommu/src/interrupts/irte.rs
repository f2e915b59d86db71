//! Host routes as host IRTEs: for a hypervisor that owns the host's VT-d
//! unit (the native backend), a guest interrupt becomes an entry of the
//! host's own interrupt remapping table, programmed with the workspace's
//! driver (`irq_remap::IrTable`), source-validated against the device's
//! host requester id.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use invalidation::{Invalidation, Invalidator};
use irq_remap::{Handle, IrTable, UnitAccess};
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{Interrupt, InterruptMode, MsiMessage};
use vtd_regs::{FrameAllocator, PhysMem, SourceId};

use super::InterruptRoutes;
use super::routes::VcpuMap;
use crate::config::Assignment;
use crate::native::Host;

/// The host unit's interrupt remapping table, shared by every guest's
/// [`IrteRoutes`] (share it with `Arc`), invalidated through the
/// [`Host`]'s invalidator. `64 * WORDS` entries.
pub struct HostInterrupts<M: PhysMem, A: FrameAllocator, I, const WORDS: usize = 4> {
    host: Arc<Host<M, A, I>>,
    table: spin::Mutex<IrTable<M, WORDS>>,
}

impl<M, A, I, const WORDS: usize> HostInterrupts<M, A, I, WORDS>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
{
    /// Turns interrupt remapping on on `host`'s unit with a new table in
    /// `mem` from `frames`, in `mode` (`irq_remap::IrTable::enable`: table
    /// pointer, global interrupt entry cache invalidation, compatibility
    /// format blocked, IRE).
    pub fn enable(
        host: Arc<Host<M, A, I>>,
        mem: M,
        frames: &A,
        mode: InterruptMode,
    ) -> Result<Self, irq_remap::Error>
    where
        I: UnitAccess,
    {
        let mut table = IrTable::new(mem, frames, mode)?;
        host.with_invalidator(|inv| table.enable(inv))?;
        Ok(Self { host, table: spin::Mutex::new(table) })
    }

    /// Host entries in use (routes of all guests, and freed ones awaiting
    /// their invalidation).
    pub fn in_use(&self) -> u32 {
        self.table.lock().in_use()
    }

    /// Runs `f` on the table and the host's invalidator, both locked (the
    /// table first; the native backend takes only the host's lock).
    fn with<R>(&self, f: impl FnOnce(&mut IrTable<M, WORDS>, &mut I) -> R) -> R {
        let mut table = self.table.lock();
        self.host.with_invalidator(|inv| f(&mut table, inv))
    }
}

/// One guest's host routes as host IRTEs: each (device, guest index) gets
/// a host entry of its own, delivering what `V` makes of the guest's
/// interrupt, from the device's host requester id only.
///
/// The VMM programs the physical device's MSI (or MSI-X vector) with
/// [`host_msi`](Self::host_msi) for the guest index the guest gave it; the
/// host entry stays the same while the route exists, so an affinity change
/// of the guest is an entry rewrite and its invalidation, not an MSI
/// reprogramming. A cleared route frees the entry (not present, a device
/// using it faults 22h on the host) after an interrupt entry cache
/// invalidation the host's unit completed.
///
/// The host's table is shared by every guest: a guest holds at most
/// `quota` host entries, so a guest programming thousands of entries
/// cannot take the interrupts of the others (beyond its quota a route is
/// not set, and the guest's old route at that index is cleared).
pub struct IrteRoutes<M: PhysMem, A: FrameAllocator, I, V, const WORDS: usize = 4> {
    shared: Arc<HostInterrupts<M, A, I, WORDS>>,
    vcpus: V,
    quota: usize,
    handles: BTreeMap<(SourceId, u16), Handle>,
}

impl<M, A, I, V, const WORDS: usize> IrteRoutes<M, A, I, V, WORDS>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    V: VcpuMap,
{
    /// A guest's routes in `shared`, its interrupts decided by `vcpus`, at
    /// most `quota` of them.
    pub fn new(shared: Arc<HostInterrupts<M, A, I, WORDS>>, vcpus: V, quota: usize) -> Self {
        Self { shared, vcpus, quota, handles: BTreeMap::new() }
    }

    /// The message the physical device the host knows as `host` must send
    /// for guest index `index`: the host entry's handle in remappable
    /// format; `None` while there is no route.
    pub fn host_msi(&self, host: SourceId, index: u16) -> Option<MsiMessage> {
        self.handles.get(&(host, index)).map(|h| h.msi(0))
    }

    /// Routes held.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether no route is held.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

impl<M, A, I, V, const WORDS: usize> InterruptRoutes for IrteRoutes<M, A, I, V, WORDS>
where
    M: PhysMem + Clone,
    A: FrameAllocator + Clone,
    I: Invalidator,
    V: VcpuMap,
{
    type Error = irq_remap::Error;

    fn resolve(&self, device: Assignment, guest: &Interrupt) -> Option<Interrupt> {
        self.vcpus.route(device, guest)
    }

    fn set_route(
        &mut self,
        device: Assignment,
        index: u16,
        route: Interrupt,
    ) -> Result<(), irq_remap::Error> {
        let key = (device.host, index);
        let (handles, quota) = (&mut self.handles, self.quota);
        self.shared.with(|table, inv| {
            if let Some(h) = handles.get(&key) {
                return table.program_device(inv, h, 0, device.host, route);
            }
            if handles.len() >= quota {
                return Err(irq_remap::Error::Full);
            }
            let h = table.allocate_reclaiming(inv, 1)?;
            match table.program_device(inv, &h, 0, device.host, route) {
                Ok(()) => {
                    handles.insert(key, h);
                    Ok(())
                }
                Err(e) => {
                    // Not present again, reusable after its invalidation.
                    let _ = table.release(inv, h);
                    Err(e)
                }
            }
        })
    }

    fn clear_route(&mut self, device: Assignment, index: u16) -> Result<(), irq_remap::Error> {
        let Some(h) = self.handles.remove(&(device.host, index)) else {
            return Ok(());
        };
        self.shared.with(|table, inv| {
            let released = table.free(h)?;
            // Waited for: the host unit must not deliver the old entry once
            // the guest's invalidation completes.
            let done = inv.post([released.invalidation()]).and_then(|t| inv.wait(t).map(|()| t));
            match done {
                Ok(ticket) => {
                    table.retire(inv, released, ticket)?;
                    table.reclaim(inv).map(drop)
                }
                Err(e) => {
                    // The block is given up (never handed out again); a
                    // global invalidation is the last try to drop it.
                    let global = Invalidation::InterruptEntries(IecScope::Global);
                    let _ = inv.invalidate([global]);
                    Err(irq_remap::Error::Invalidation(e))
                }
            }
        })
    }
}
