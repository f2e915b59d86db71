//! The VMM's side: which interrupts a guest owns ([`VcpuMap`],
//! [`GuestApics`]) and a plain MSI route table ([`MsiRoutes`]).

use core::fmt;
use core::ops::{Range, RangeInclusive};

use vtd_regs::SourceId;
use vtd_regs::irq::{DestinationMode, Interrupt, MsiMessage};

use super::{InterruptRoutes, MAX_ROUTES};
use crate::config::Assignment;

/// The VMM's answer to "may this guest's device interrupt this
/// destination with this vector, and what is that on the host?".
///
/// `route` gets the guest entry's interrupt (destination in the guest's
/// APIC ids, vector already 16 or above, fixed or lowest priority,
/// edge-triggered) and returns the host interrupt that delivers it to the
/// guest, or `None` for a destination that is not one of the guest's vCPUs
/// (or a vector the VMM keeps for itself). Closures
/// `Fn(Assignment, &Interrupt) -> Option<Interrupt>` implement it.
pub trait VcpuMap {
    /// The host interrupt for `guest` from `device`, or `None`.
    fn route(&self, device: Assignment, guest: &Interrupt) -> Option<Interrupt>;
}

impl<F: Fn(Assignment, &Interrupt) -> Option<Interrupt>> VcpuMap for F {
    fn route(&self, device: Assignment, guest: &Interrupt) -> Option<Interrupt> {
        self(device, guest)
    }
}

/// A guest whose vCPUs have the APIC ids `apic_ids` and may be sent
/// `vectors`, delivered as the guest asked (the route is the guest's own
/// interrupt, as a KVM VMM programs it: an MSI route into the guest's
/// virtual APICs). Physical destinations only: a logical destination (a
/// set of vCPUs) is refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GuestApics {
    /// The vCPUs' APIC ids.
    pub apic_ids: Range<u32>,
    /// The vectors a device may send.
    pub vectors: RangeInclusive<u8>,
}

impl GuestApics {
    /// `vcpus` vCPUs with APIC ids 0 to `vcpus - 1` (KVM's default), any
    /// vector from 16.
    pub const fn new(vcpus: u32) -> Self {
        Self { apic_ids: 0..vcpus, vectors: super::FIRST_VECTOR..=u8::MAX }
    }
}

impl VcpuMap for GuestApics {
    fn route(&self, _: Assignment, guest: &Interrupt) -> Option<Interrupt> {
        let ok = guest.destination_mode == DestinationMode::Physical
            && self.apic_ids.contains(&guest.destination)
            && self.vectors.contains(&guest.vector);
        ok.then_some(*guest)
    }
}

/// One route of an [`MsiRoutes`] table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MsiRoute {
    /// The device.
    pub device: Assignment,
    /// The guest interrupt index its MSI names.
    pub index: u16,
    /// What the VMM delivers for it.
    pub interrupt: Interrupt,
}

/// The route table is full.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableFull;

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MSI route table full")
    }
}

/// A VMM's MSI route table: at most `N` routes from (host device, guest
/// interrupt index) to the interrupt delivered, with the guest's own vCPUs
/// and vectors decided by `V`.
///
/// What a VMM on KVM keeps: when the device's MSI fires (a VFIO eventfd),
/// it looks the route up ([`get`](Self::get), [`message`](Self::message))
/// and injects it (`KVM_SIGNAL_MSI`), or it pushes the table to KVM's GSI
/// routing (`KVM_SET_GSI_ROUTING`, one irqfd per vector) whenever
/// [`generation`](Self::generation) moved. The vIOMMU changes the table
/// before the guest's invalidation completes; a VMM that programs KVM from
/// it must do so before resuming the guest (or implement
/// [`InterruptRoutes`] itself, wrapping this table, to push each change as
/// it is made).
#[derive(Clone, Debug)]
pub struct MsiRoutes<V, const N: usize = MAX_ROUTES> {
    vcpus: V,
    routes: heapless::Vec<MsiRoute, N>,
    generation: u64,
}

impl<V: VcpuMap, const N: usize> MsiRoutes<V, N> {
    /// An empty table for a guest whose interrupts `vcpus` decides.
    pub const fn new(vcpus: V) -> Self {
        Self { vcpus, routes: heapless::Vec::new(), generation: 0 }
    }

    /// The VMM's policy.
    pub fn vcpus(&self) -> &V {
        &self.vcpus
    }

    /// The interrupt the device the host knows as `host` delivers through
    /// guest index `index`, if routed.
    pub fn get(&self, host: SourceId, index: u16) -> Option<Interrupt> {
        self.position(host, index).map(|i| self.routes[i].interrupt)
    }

    /// [`get`](Self::get) as a compatibility-format MSI message (what KVM's
    /// MSI routing takes): `None` if not routed, or for a destination above
    /// 255 (which needs the VMM's extended destination id form).
    pub fn message(&self, host: SourceId, index: u16) -> Option<MsiMessage> {
        MsiMessage::compatibility(&self.get(host, index)?)
    }

    /// The routes.
    pub fn iter(&self) -> impl Iterator<Item = &MsiRoute> {
        self.routes.iter()
    }

    /// Routes held.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route is held.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Changes so far (set or cleared routes).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn position(&self, host: SourceId, index: u16) -> Option<usize> {
        self.routes.iter().position(|r| r.device.host == host && r.index == index)
    }
}

impl<V: VcpuMap, const N: usize> InterruptRoutes for MsiRoutes<V, N> {
    type Error = TableFull;

    fn resolve(&self, device: Assignment, guest: &Interrupt) -> Option<Interrupt> {
        self.vcpus.route(device, guest)
    }

    fn set_route(
        &mut self,
        device: Assignment,
        index: u16,
        interrupt: Interrupt,
    ) -> Result<(), TableFull> {
        let route = MsiRoute { device, index, interrupt };
        match self.position(device.host, index) {
            Some(i) => self.routes[i] = route,
            None => self.routes.push(route).map_err(|_| TableFull)?,
        }
        self.generation += 1;
        Ok(())
    }

    fn clear_route(&mut self, device: Assignment, index: u16) -> Result<(), TableFull> {
        if let Some(i) = self.position(device.host, index) {
            self.routes.swap_remove(i);
            self.generation += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: Assignment =
        Assignment { guest: SourceId::from_raw(0x08), host: SourceId::from_raw(0x10) };

    #[test]
    fn guest_apics_is_identity_on_its_vcpus() {
        let apics = GuestApics::new(4);
        let i = Interrupt::fixed(3, 0x40);
        assert_eq!(apics.route(DEV, &i), Some(i));
        assert_eq!(apics.route(DEV, &Interrupt::fixed(4, 0x40)), None);
        let logical = Interrupt { destination_mode: DestinationMode::Logical, ..i };
        assert_eq!(apics.route(DEV, &logical), None);
        let narrow = GuestApics { vectors: 0x30..=0x3f, ..apics };
        assert_eq!(narrow.route(DEV, &i), None);
    }

    #[test]
    fn table_sets_replaces_and_clears() {
        let mut t: MsiRoutes<_, 2> = MsiRoutes::new(GuestApics::new(2));
        t.set_route(DEV, 5, Interrupt::fixed(1, 0x41)).unwrap();
        t.set_route(DEV, 5, Interrupt::fixed(0, 0x42)).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(DEV.host, 5), Some(Interrupt::fixed(0, 0x42)));
        // The message KVM's routing takes: APIC id in address bits 19:12,
        // vector in data bits 7:0, level assert (bit 14) set as for any MSI.
        let m = t.message(DEV.host, 5).unwrap();
        assert_eq!((m.address, m.data), (0xfee0_0000, 0x4042));
        t.set_route(DEV, 6, Interrupt::fixed(0, 0x43)).unwrap();
        assert_eq!(t.set_route(DEV, 7, Interrupt::fixed(0, 0x44)), Err(TableFull));
        t.clear_route(DEV, 5).unwrap();
        t.clear_route(DEV, 5).unwrap();
        assert_eq!(t.get(DEV.host, 5), None);
        assert_eq!(t.generation(), 4);
    }
}
