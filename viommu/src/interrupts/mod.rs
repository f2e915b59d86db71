//! Interrupt remapping for the guest's assigned devices: the guest's
//! interrupt remapping table shadowed into host interrupt routes, as its
//! page tables are shadowed into host domains.
//!
//! A guest with interrupt remapping on (the unit advertises ECAP.IR, and
//! ECAP.EIM as configured, §10.4.3) gives its device a handle, not an
//! interrupt: the device's MSI names an entry of the guest's table (§5.1.2.2)
//! and the guest expects the entry's vector at the entry's vCPU, from that
//! device only (source validation, §9.10). The device is real, so its MSI
//! reaches the host, not the guest's unit: the host must deliver what the
//! guest's entry says, and nothing the guest does not own. The vIOMMU keeps
//! the host side in step, one host route per (assigned device, guest
//! interrupt index), at the moments hardware would use a new entry:
//!
//! - on every interrupt entry cache invalidation the guest's unit performs
//!   (§6.5.2.7; global or index-selective, with the scope as the unit
//!   performs it, told through [`vtd_emu::hook`]), and on SIRTP with
//!   CAP.ESIRTPS and on IRE set (the unit uses fresh entries then), the
//!   entries covered are read from the guest's RAM through the unit's own
//!   reader ([`UnitView::interrupt_entry`]: at most the table IRTA.S
//!   latched, 2^16 entries; a table outside the guest's RAM reads as
//!   nothing) and decoded by the one decoder of the format
//!   ([`RawIrte::decode`]);
//! - an entry gives a device a route only if it is present, in remapped
//!   format, free of reserved bits, its SVT/SQ/SID permit the device's
//!   guest requester id ([`SourceValidation::permits`](vtd_regs::irq::SourceValidation::permits), the unit's own
//!   check), its vector is 16 or above (0-15 are reserved, an APIC refuses
//!   them), its delivery mode fixed or lowest priority (no NMI, SMI, INIT
//!   or ExtINT from a device), edge-triggered (an assigned device's MSI
//!   has no EOI to wait for), and the VMM maps its destination and vector
//!   to a host interrupt ([`InterruptRoutes::resolve`]: the guest's own
//!   vCPUs, vectors it may use). Posted-format entries are refused: the
//!   guest unit has no CAP.PI, so for it a posted entry is a reserved one
//!   (fault 24h);
//! - the host side is programmed through [`InterruptRoutes`]: a route is
//!   set where an entry gives one, changed where it changed, and cleared
//!   where an entry is gone, invalid, refused or beyond the table, before
//!   the guest's invalidation completes. A host that cannot clear a route
//!   stalls the guest's invalidation
//!   ([`Outcome::Stall`](vtd_emu::hook::Outcome::Stall)); one that cannot
//!   set one has the old route cleared.
//!
//! Between invalidations the host keeps the routes it has, as a unit keeps
//! cached entries: a guest that rewrites an entry without invalidating keeps
//! the old interrupt (its bug, as on hardware). With IRE clear there are no
//! routes (a device's interrupts are then the VMM's ordinary,
//! compatibility-format path, as is an MSI in compatibility format with
//! CFIS set). Implementations: [`MsiRoutes`] (a VMM's MSI route table,
//! KVM GSI routing or `KVM_SIGNAL_MSI` style) and, with `alloc`,
//! [`IrteRoutes`] (host IRTEs on the host's VT-d unit, for the native
//! backend).
//!
//! What one guest entry gives (the check the vIOMMU makes for each device
//! on each invalidation;
//! [`Viommu::with_interrupts`](crate::Viommu::with_interrupts) wires it to
//! the guest's unit, `viommu/tests/interrupts.rs` drives it with a guest
//! driver):
//!
//! ```
//! use viommu::Assignment;
//! use viommu::interrupts::{GuestApics, MsiRoutes, Refusal, route_for};
//! use vtd_regs::SourceId;
//! use vtd_regs::irq::{Interrupt, InterruptMode, RemappedIrte};
//!
//! // The guest's device 00:01.0 is the host's 03:00.0; the guest has 2 vCPUs.
//! let dev = Assignment {
//!     guest: SourceId::new(0, 1, 0).unwrap(),
//!     host: SourceId::new(3, 0, 0).unwrap(),
//! };
//! let routes = MsiRoutes::<_>::new(GuestApics::new(2));
//! let mode = InterruptMode::XApic;
//! let entry = |sid, dest, vector| {
//!     RemappedIrte::for_device(sid, Interrupt::fixed(dest, vector)).encode(mode).unwrap()
//! };
//! // Vector 0x41 to vCPU 1, from the guest's device: routed.
//! let ok = entry(dev.guest, 1, 0x41);
//! assert_eq!(route_for(&routes, dev, ok, mode), Ok(Interrupt::fixed(1, 0x41)));
//! // Naming another requester, a CPU the guest does not have, a reserved
//! // vector: nothing.
//! let other = SourceId::new(0, 2, 0).unwrap();
//! let refused = |e| route_for(&routes, dev, e, mode).unwrap_err();
//! assert_eq!(refused(entry(other, 1, 0x41)), Refusal::Source);
//! assert_eq!(refused(entry(dev.guest, 7, 0x41)), Refusal::Destination);
//! assert_eq!(refused(entry(dev.guest, 1, 0x02)), Refusal::Vector);
//! ```

#[cfg(feature = "alloc")]
mod irte;
mod routes;

use core::fmt;

use vtd_emu::hook::{Change, UnitView};
use vtd_regs::PhysMem;
use vtd_regs::desc::IecScope;
use vtd_regs::irq::{DeliveryMode, Interrupt, InterruptMode, Irte, RawIrte, TriggerMode};

#[cfg(feature = "alloc")]
pub use irte::{HostInterrupts, IrteRoutes};
pub use routes::{GuestApics, MsiRoute, MsiRoutes, TableFull, VcpuMap};

use crate::config::Assignment;
use crate::counters::ViommuCounters;
use crate::shadow::Device;

/// Host routes a vIOMMU holds without `alloc` (with it, as many as the
/// guest's entries give).
pub const MAX_ROUTES: usize = 64;

/// Vectors 0-15 are reserved: a local APIC refuses them as illegal (Intel
/// SDM vol. 3, 11.5.2). A guest entry naming one gives no route.
pub const FIRST_VECTOR: u8 = 16;

/// The host side of a guest's remapped interrupts, implemented by the VMM
/// or hypervisor: what a guest interrupt becomes on the host, and the
/// routes that deliver it.
///
/// A route is keyed by the assigned device ([`Assignment::host`] is what
/// the host sees) and the guest's interrupt index (the handle, plus the
/// subhandle, the device's MSI names). The vIOMMU calls
/// [`set_route`](Self::set_route) only with what
/// [`resolve`](Self::resolve) returned for the guest's entry, and only for
/// a device whose guest requester id the entry permits; both calls return
/// only once the host delivers accordingly (the guest's invalidation
/// completes after them).
pub trait InterruptRoutes {
    /// Why the host could not change a route.
    type Error: fmt::Debug;

    /// Whether the vIOMMU shadows the guest's table at all (`false` only
    /// for [`NoInterruptRoutes`]).
    const SHADOWS: bool = true;

    /// The host interrupt that delivers `guest` (the guest entry's
    /// interrupt, already checked for vector, delivery and trigger mode) of
    /// `device` to this guest, or `None` if its destination is not one of
    /// this guest's vCPUs or the vector not one it may use. For a KVM VMM,
    /// the guest's own interrupt when the destination is a vCPU's APIC id;
    /// for a hypervisor programming host IRTEs, the physical CPU running
    /// the vCPU and the host vector it posts the guest's vector from.
    fn resolve(&self, device: Assignment, guest: &Interrupt) -> Option<Interrupt>;

    /// Makes the device's interrupts through guest index `index` deliver
    /// `route`, replacing any route it had.
    fn set_route(
        &mut self,
        device: Assignment,
        index: u16,
        route: Interrupt,
    ) -> Result<(), Self::Error>;

    /// Blocks the device's interrupts through guest index `index` (a route
    /// set before is gone when this returns `Ok`).
    fn clear_route(&mut self, device: Assignment, index: u16) -> Result<(), Self::Error>;
}

/// No host routes: the vIOMMU does not shadow the guest's interrupt
/// remapping table (a VMM that remaps each interrupt itself through
/// [`Emulator::remap_interrupt`](vtd_emu::Emulator::remap_interrupt), or
/// gives its guest no assigned device with MSIs).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NoInterruptRoutes;

impl InterruptRoutes for NoInterruptRoutes {
    type Error = core::convert::Infallible;
    const SHADOWS: bool = false;

    fn resolve(&self, _: Assignment, _: &Interrupt) -> Option<Interrupt> {
        None
    }

    fn set_route(&mut self, _: Assignment, _: u16, _: Interrupt) -> Result<(), Self::Error> {
        Ok(())
    }

    fn clear_route(&mut self, _: Assignment, _: u16) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why a guest entry gives a device no route.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The entry is beyond the table, outside the guest's RAM or above the
    /// unit's address width (what faults 21h or 23h on the unit).
    Unreadable,
    /// P is clear.
    NotPresent,
    /// Reserved bits or encodings are set (fault 24h on the unit).
    Malformed,
    /// A posted-format entry (the guest unit has no CAP.PI: 24h).
    Posted,
    /// The entry's source validation does not permit the device's guest
    /// requester id (fault 26h on the unit).
    Source,
    /// A reserved vector (below [`FIRST_VECTOR`]).
    Vector,
    /// Delivery mode other than fixed or lowest priority.
    DeliveryMode,
    /// Level-triggered.
    TriggerMode,
    /// The VMM does not deliver this destination and vector to the guest.
    Destination,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unreadable => "entry unreadable",
            Refusal::NotPresent => "entry not present",
            Refusal::Malformed => "reserved bits set",
            Refusal::Posted => "posted format",
            Refusal::Source => "source validation excludes the device",
            Refusal::Vector => "reserved vector",
            Refusal::DeliveryMode => "delivery mode not allowed",
            Refusal::TriggerMode => "level-triggered",
            Refusal::Destination => "destination or vector not the guest's",
        })
    }
}

/// The host route guest entry `raw` (read from a table in `mode`) gives
/// `device`, or why it gives none.
pub fn route_for<R: InterruptRoutes + ?Sized>(
    routes: &R,
    device: Assignment,
    raw: RawIrte,
    mode: InterruptMode,
) -> Result<Interrupt, Refusal> {
    let e = match raw.decode(mode) {
        Ok(Irte::Remapped(e)) => e,
        Ok(Irte::NotPresent { .. }) => return Err(Refusal::NotPresent),
        Ok(Irte::Posted(_)) => return Err(Refusal::Posted),
        Err(_) => return Err(Refusal::Malformed),
    };
    let i = e.interrupt;
    if !e.source.permits(device.guest) {
        Err(Refusal::Source)
    } else if i.vector < FIRST_VECTOR {
        Err(Refusal::Vector)
    } else if !matches!(i.delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) {
        Err(Refusal::DeliveryMode)
    } else if i.trigger != TriggerMode::Edge {
        Err(Refusal::TriggerMode)
    } else {
        routes.resolve(device, &i).ok_or(Refusal::Destination)
    }
}

/// A host route the vIOMMU holds: the device (by its slot in the
/// vIOMMU's device list), the guest index, and the route.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Held {
    device: usize,
    index: u16,
    route: Interrupt,
}

#[cfg(feature = "alloc")]
type HeldList = alloc::vec::Vec<Held>;
#[cfg(not(feature = "alloc"))]
type HeldList = heapless::Vec<Held, MAX_ROUTES>;

/// A host route that could not be cleared: the guest's invalidation must
/// wait.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Uncleared;

/// The interrupt side of the shadow: the host side `R` and the routes it
/// holds, kept sorted by (index, device).
pub(crate) struct InterruptShadow<R> {
    pub(crate) routes: R,
    held: HeldList,
}

impl<R: InterruptRoutes> InterruptShadow<R> {
    pub(crate) fn new(routes: R) -> Self {
        Self { routes, held: HeldList::new() }
    }

    /// Calls `f` with every route held: the device's assignment, the
    /// guest index, the host route.
    pub(crate) fn for_each(
        &self,
        devices: &[Device],
        mut f: impl FnMut(Assignment, u16, Interrupt),
    ) {
        for h in &self.held {
            f(devices[h.device].ids, h.index, h.route);
        }
    }

    /// The guest's unit performs an interrupt entry cache invalidation of
    /// `scope`: every route of the entries it covers follows the guest's
    /// table.
    pub(crate) fn invalidate<M: PhysMem + ?Sized>(
        &mut self,
        unit: &UnitView<'_, M>,
        devices: &[Device],
        scope: IecScope,
        counters: &mut ViommuCounters,
    ) -> Result<(), Uncleared> {
        if !R::SHADOWS {
            return Ok(());
        }
        let (first, end) = match scope {
            IecScope::Global => (0, 1 << 16),
            IecScope::Entries { index, mask } => {
                let first = u32::from(index);
                (first, (first + (1u32 << mask.min(16))).min(1 << 16))
            }
        };
        self.sync(unit, devices, first, end, counters)
    }

    /// The guest's unit changed state: routes go with IRE clear and are
    /// built from the table when the unit starts using fresh entries (IRE
    /// set; SIRTP on a unit with CAP.ESIRTPS, which drops its cache).
    pub(crate) fn changed<M: PhysMem + ?Sized>(
        &mut self,
        unit: &UnitView<'_, M>,
        devices: &[Device],
        change: Change,
        counters: &mut ViommuCounters,
    ) {
        if !R::SHADOWS {
            return;
        }
        let fresh = match change {
            Change::Reset | Change::InterruptRemapping(_) => true,
            Change::InterruptTable(_) => unit.config().cap.esirtps(),
            _ => false,
        };
        if fresh {
            // A route that cannot be cleared stays held and is tried again
            // at the next invalidation, which stalls until it goes.
            let _ = self.sync(unit, devices, 0, 1 << 16, counters);
        }
    }

    /// Removes every route (the guest goes away); routes the host cannot
    /// clear are counted as host errors.
    pub(crate) fn clear_all(&mut self, devices: &[Device], counters: &mut ViommuCounters) {
        while let Some(h) = self.held.pop() {
            if self.routes.clear_route(devices[h.device].ids, h.index).is_err() {
                counters.host_errors += 1;
            }
        }
    }

    /// Brings the routes of guest indices `first..end` in step with the
    /// guest's table (none with IRE clear).
    fn sync<M: PhysMem + ?Sized>(
        &mut self,
        unit: &UnitView<'_, M>,
        devices: &[Device],
        first: u32,
        end: u32,
        counters: &mut ViommuCounters,
    ) -> Result<(), Uncleared> {
        let table = unit.interrupt_table();
        let mode = InterruptMode::from_eime(table.eime());
        // Entries beyond the table give nothing, nor any with IRE clear:
        // read only those within it, and clear the routes held elsewhere
        // in the range.
        let last = if unit.interrupt_remapping_enabled() { table.entries() } else { 0 };
        let read = first..end.min(last).max(first);
        let mut result = Ok(());
        for index in read.clone() {
            let raw = unit.interrupt_entry(index);
            counters.interrupt_entries_read += 1;
            for (d, device) in devices.iter().map(|d| d.ids).enumerate() {
                let want = raw
                    .map_err(|_| Refusal::Unreadable)
                    .and_then(|raw| route_for(&self.routes, device, raw, mode));
                if self.apply(devices, d, index as u16, want.ok(), counters).is_err() {
                    result = Err(Uncleared);
                }
            }
        }
        let mut i = 0;
        while i < self.held.len() {
            let h = self.held[i];
            let index = u32::from(h.index);
            if (first..end).contains(&index) && !read.contains(&index) {
                if self.routes.clear_route(devices[h.device].ids, h.index).is_ok() {
                    self.held.remove(i);
                    counters.interrupt_routes_cleared += 1;
                    continue;
                }
                counters.host_errors += 1;
                result = Err(Uncleared);
            }
            i += 1;
        }
        result
    }

    /// Makes device `d`'s route at `index` be `want`.
    fn apply(
        &mut self,
        devices: &[Device],
        d: usize,
        index: u16,
        want: Option<Interrupt>,
        counters: &mut ViommuCounters,
    ) -> Result<(), Uncleared> {
        let device = devices[d].ids;
        let at = self.held.binary_search_by_key(&(index, d), |h| (h.index, h.device));
        let held = at.ok().map(|i| self.held[i].route);
        if held == want {
            return Ok(());
        }
        if let Some(route) = want {
            let room = held.is_some() || self.held.len() < self.capacity();
            if room && self.routes.set_route(device, index, route).is_ok() {
                counters.interrupt_routes_set += 1;
                let h = Held { device: d, index, route };
                match at {
                    Ok(i) => self.held[i] = h,
                    Err(i) => {
                        #[cfg(feature = "alloc")]
                        self.held.insert(i, h);
                        // Room was checked above.
                        #[cfg(not(feature = "alloc"))]
                        let _ = self.held.insert(i, h);
                    }
                }
                return Ok(());
            }
            if room {
                counters.host_errors += 1;
            } else {
                counters.interrupt_route_drops += 1;
            }
        }
        // No route wanted, or none could be set: the old one goes.
        let Ok(i) = at else { return Ok(()) };
        if self.routes.clear_route(device, index).is_err() {
            counters.host_errors += 1;
            return Err(Uncleared);
        }
        counters.interrupt_routes_cleared += 1;
        self.held.remove(i);
        Ok(())
    }

    /// Routes the list holds at most.
    fn capacity(&self) -> usize {
        #[cfg(feature = "alloc")]
        return usize::MAX;
        #[cfg(not(feature = "alloc"))]
        return MAX_ROUTES;
    }
}

#[cfg(test)]
mod tests {
    use invalidation::QueuedInvalidator;
    use irq_remap::IrTable;
    use vtd_emu::SimFrameAllocator;
    use vtd_emu::mem::HeapMemory;
    use vtd_regs::regs::QueueSize;
    use vtd_regs::{PhysAddr, RemappingUnit, SourceId};

    use super::*;
    use crate::host::{HostIommu, Placed};
    use crate::{GuestLayout, GuestMemory, Viommu, ViommuConfig};

    /// A host IOMMU that does nothing (the DMA side is not under test).
    struct NoIommu;

    impl HostIommu for NoIommu {
        type Domain = ();
        type Error = ();
        fn create_domain(&mut self) -> Result<(), ()> {
            Ok(())
        }
        fn destroy_domain(&mut self, _: ()) {}
        fn attach(&mut self, _: &mut (), _: SourceId) -> Result<(), ()> {
            Ok(())
        }
        fn detach(&mut self, _: SourceId) -> Result<(), ()> {
            Ok(())
        }
        fn map(&mut self, _: &mut (), _: Placed) -> Result<(), ()> {
            Ok(())
        }
        fn unmap(&mut self, _: &mut (), _: Placed) -> Result<(), ()> {
            Ok(())
        }
        fn complete(&mut self, _: &mut ()) -> Result<(), ()> {
            Ok(())
        }
    }

    /// An MSI route table whose clears can be made to fail.
    struct Flaky {
        table: MsiRoutes<GuestApics, 128>,
        fail_clears: bool,
    }

    impl InterruptRoutes for Flaky {
        type Error = ();
        fn resolve(&self, d: Assignment, i: &Interrupt) -> Option<Interrupt> {
            self.table.resolve(d, i)
        }
        fn set_route(&mut self, d: Assignment, index: u16, r: Interrupt) -> Result<(), ()> {
            self.table.set_route(d, index, r).map_err(drop)
        }
        fn clear_route(&mut self, d: Assignment, index: u16) -> Result<(), ()> {
            if self.fail_clears {
                return Err(());
            }
            self.table.clear_route(d, index).map_err(drop)
        }
    }

    const DEV: SourceId = SourceId::from_raw(0x08);
    type Mem<'a> = GuestMemory<&'a HeapMemory>;
    type V<'a> = Viommu<Mem<'a>, NoIommu, Flaky>;

    fn viommu(host: &HeapMemory, esirtps: bool) -> V<'_> {
        let gmem = GuestMemory::new(host, GuestLayout::new(PhysAddr::ZERO, 1 << 20));
        let mut config = ViommuConfig::qemu();
        config.unit.cap = config.unit.cap.with_esirtps(esirtps);
        let routes = Flaky { table: MsiRoutes::new(GuestApics::new(4)), fail_clears: false };
        let dev = Assignment { guest: DEV, host: DEV };
        Viommu::with_interrupts(gmem, NoIommu, routes, &[dev], config).unwrap()
    }

    fn entry(vector: u8) -> RawIrte {
        let e = vtd_regs::irq::RemappedIrte::for_device(DEV, Interrupt::fixed(1, vector));
        e.encode(InterruptMode::XApic).unwrap()
    }

    fn write(mem: &Mem<'_>, table: PhysAddr, index: u64, raw: RawIrte) {
        let at = table.as_u64() + index * 16;
        mem.write_u64(PhysAddr::new(at + 8), raw.hi()).unwrap();
        mem.write_u64(PhysAddr::new(at), raw.lo()).unwrap();
    }

    /// Runs `f` on a stack large enough for a vIOMMU without `alloc`
    /// (its shadow domains are inline).
    fn big_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new().stack_size(64 << 20).spawn(f).unwrap().join().unwrap();
    }

    #[test]
    fn routes_are_bounded_without_alloc_and_clears_stall() {
        big_stack(bounded_and_stalled);
    }

    fn bounded_and_stalled() {
        let host = HeapMemory::new(1 << 20);
        let v = viommu(&host, false);
        let mem = *v.unit().memory();
        let frames = SimFrameAllocator::new(mem, PhysAddr::new(0x8_0000), PhysAddr::new(1 << 20));
        let unit = RemappingUnit::new(&v).unwrap();
        let qs = QueueSize::from_order(0).unwrap();
        let mut inv = QueuedInvalidator::new(unit, mem, &frames, qs).map_err(|r| r.error).unwrap();
        let mut table: IrTable<_> = IrTable::new(mem, &frames, InterruptMode::XApic).unwrap();
        table.enable(&mut inv).unwrap();
        let base = table.irta().table();
        let n = MAX_ROUTES as u64 + 8;
        for i in 0..n {
            write(&mem, base, i, entry(0x40));
        }
        let global = [invalidation::Invalidation::InterruptEntries(IecScope::Global)];
        invalidation::Invalidator::invalidate(&mut inv, global).unwrap();
        let held = v.with_routes(|r| r.table.len());
        let c = v.counters();
        #[cfg(feature = "alloc")]
        assert_eq!((held, c.interrupt_route_drops), (n as usize, 0));
        #[cfg(not(feature = "alloc"))]
        assert_eq!((held, c.interrupt_route_drops), (MAX_ROUTES, 8));

        // The host cannot clear: the guest's invalidation does not
        // complete while the old route remains.
        v.with_routes(|r| r.fail_clears = true);
        write(&mem, base, 0, RawIrte::ZERO);
        let one =
            [invalidation::Invalidation::InterruptEntries(IecScope::Entries { index: 0, mask: 0 })];
        assert!(invalidation::Invalidator::invalidate(&mut inv, one).is_err());
        assert!(v.with_routes(|r| r.table.get(DEV, 0)).is_some());
        v.with_routes(|r| r.fail_clears = false);
        v.unit().process();
        assert_eq!(v.with_routes(|r| r.table.get(DEV, 0)), None);
    }

    #[test]
    fn sirtp_with_esirtps_reads_the_new_table() {
        big_stack(esirtps);
    }

    fn esirtps() {
        let host = HeapMemory::new(1 << 20);
        let v = viommu(&host, true);
        let mem = *v.unit().memory();
        let mut unit = RemappingUnit::new(&v).unwrap();
        let (a, b) = (PhysAddr::new(0x1_0000), PhysAddr::new(0x2_0000));
        write(&mem, a, 3, entry(0x41));
        write(&mem, b, 3, entry(0x42));
        unit.set_interrupt_remap_table(vtd_regs::regs::Irta::new(a, 7, false)).unwrap();
        unit.set_interrupt_remapping(true).unwrap();
        assert_eq!(v.with_routes(|r| r.table.get(DEV, 3)), Some(Interrupt::fixed(1, 0x41)));
        unit.set_interrupt_remap_table(vtd_regs::regs::Irta::new(b, 7, false)).unwrap();
        assert_eq!(v.with_routes(|r| r.table.get(DEV, 3)), Some(Interrupt::fixed(1, 0x42)));
        // A table of two entries: index 3 is beyond it.
        unit.set_interrupt_remap_table(vtd_regs::regs::Irta::new(b, 0, false)).unwrap();
        assert_eq!(v.with_routes(|r| r.table.get(DEV, 3)), None);
    }
}
