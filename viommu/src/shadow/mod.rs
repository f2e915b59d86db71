//! The shadow: the vIOMMU's [`Hook`] on its guest-visible unit, which keeps
//! the host side equal to what the guest's tables map, as of the guest's
//! last invalidation.
//!
//! The unit decodes everything the guest writes (registers, queue) and
//! tells the shadow, before the guest can see the command complete:
//! - an IOTLB invalidation: each shadow domain it covers is
//!   resynchronised over the range it covers (the guest's table is
//!   scanned into runs of contiguous guest-physical pages, compared with
//!   the extents installed, and the difference applied through the
//!   backend);
//! - a context-cache invalidation, a root table latched by SRTP, or
//!   translation switched: every assigned device's guest context is read
//!   again, devices move between shadow domains (created and filled before
//!   a device is attached to them), and shadow domains no device uses are
//!   emptied and destroyed;
//! - an interrupt entry cache invalidation, IRE or SIRTP: the host
//!   interrupt routes follow the guest's interrupt remapping table
//!   ([`crate::interrupts`]).
//!
//! When the backend cannot complete an unmap, the shadow stalls the
//! guest's invalidation ([`Outcome::Stall`]): the guest's wait does not
//! complete while a host translation it removed may remain.

mod domain;
pub(crate) mod extents;
mod scan;

use vtd_emu::hook::{Change, Hook, Invalidation, Outcome, UnitView};
use vtd_regs::{IotlbScope, SourceId};
use vtd_tables::{TranslationType, WalkLimits, lookup_context};

pub(crate) use domain::{Incomplete, Key, ShadowDomain, Sync, placed};

use crate::config::{Assignment, ViommuConfig};
use crate::counters::ViommuCounters;
use crate::guest_mem::GuestRam;
use crate::host::HostIommu;
use crate::interrupts::{InterruptRoutes, InterruptShadow, NoInterruptRoutes};

/// How many devices and shadow domains a vIOMMU holds without `alloc`.
pub const MAX_DEVICES: usize = 8;
/// See [`MAX_DEVICES`].
pub const MAX_DOMAINS: usize = 8;

/// An assigned device and the shadow domain it is attached to in the host.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Device {
    pub(crate) ids: Assignment,
    pub(crate) attached: Option<Key>,
}

#[cfg(feature = "alloc")]
type Devices = alloc::vec::Vec<Device>;
#[cfg(not(feature = "alloc"))]
type Devices = heapless::Vec<Device, MAX_DEVICES>;
#[cfg(feature = "alloc")]
type Domains<D> = alloc::vec::Vec<ShadowDomain<D>>;
#[cfg(not(feature = "alloc"))]
type Domains<D> = heapless::Vec<ShadowDomain<D>, MAX_DOMAINS>;

/// A list that grows with `alloc` and has a fixed capacity without it.
trait List<T> {
    /// Appends `item`; gives it back only when a fixed capacity is reached.
    fn try_push(&mut self, item: T) -> Result<(), T>;
}

#[cfg(feature = "alloc")]
impl<T> List<T> for alloc::vec::Vec<T> {
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.push(item);
        Ok(())
    }
}

#[cfg(not(feature = "alloc"))]
impl<T, const N: usize> List<T> for heapless::Vec<T, N> {
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.push(item)
    }
}

/// Too many devices for a vIOMMU without `alloc`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TooManyDevices;

/// The vIOMMU's hook on its guest-visible unit, and its state behind the
/// unit's lock: the backend, the assigned devices, the shadow domains,
/// the host interrupt routes `R` ([`crate::interrupts`]) and the counters
/// (see the [module](self) docs). Reached through
/// [`Viommu`](crate::Viommu)'s methods.
pub struct Shadow<B: HostIommu, R: InterruptRoutes = NoInterruptRoutes> {
    pub(crate) backend: B,
    pub(crate) config: ViommuConfig,
    limits: WalkLimits,
    pub(crate) devices: Devices,
    pub(crate) domains: Domains<B::Domain>,
    pub(crate) counters: ViommuCounters,
    /// Pages translated domains may still install (the guest's quota).
    room: usize,
    pub(crate) interrupts: InterruptShadow<R>,
}

impl<B: HostIommu, R: InterruptRoutes> Shadow<B, R> {
    /// The shadow of a guest whose unit is configured as in `config`, with
    /// `devices` assigned (all blocked until the guest attaches them) and
    /// host interrupt routes `routes`.
    pub(crate) fn new(
        backend: B,
        routes: R,
        devices: &[Assignment],
        config: ViommuConfig,
    ) -> Result<Self, TooManyDevices> {
        let unit = config.unit;
        let limits = WalkLimits::new(unit.cap, unit.ecap, unit.host_address_width.bits());
        let mut list = Devices::new();
        for &ids in devices {
            list.try_push(Device { ids, attached: None }).map_err(|_| TooManyDevices)?;
        }
        let room = config.max_pages;
        Ok(Self {
            backend,
            config,
            limits,
            devices: list,
            domains: Domains::new(),
            counters: ViommuCounters::default(),
            room,
            interrupts: InterruptShadow::new(routes),
        })
    }

    /// What a resynchronisation over `mem` may use, with the domains apart.
    fn split<'a, G: ?Sized>(
        &'a mut self,
        mem: &'a G,
    ) -> (&'a mut Domains<B::Domain>, Sync<'a, G, B>) {
        let sync = Sync {
            mem,
            backend: &mut self.backend,
            limits: &self.limits,
            counters: &mut self.counters,
            room: &mut self.room,
            budget: self.config.scan_budget,
        };
        (&mut self.domains, sync)
    }

    /// An IOTLB invalidation of `scope`: resynchronises every shadow
    /// domain it covers, over the range it covers. A domain whose backend
    /// lost track of a mapping is taken out of service
    /// ([`quarantine`](Self::quarantine)); `Ok(true)` then, as its devices
    /// must be attached again.
    fn sync_iotlb<G: GuestRam + ?Sized>(
        &mut self,
        mem: &G,
        scope: IotlbScope,
    ) -> Result<bool, Incomplete> {
        let (domains, mut sync) = self.split(mem);
        let mut result = Ok(());
        let mut lost = None;
        for (i, d) in domains.iter_mut().enumerate() {
            let Key::Translated(ctx) = d.key else { continue };
            let range = match scope {
                IotlbScope::Global => (0, u64::MAX),
                IotlbScope::Domain(id) if id == ctx.domain => (0, u64::MAX),
                IotlbScope::Pages { domain, addr, order, .. } if domain == ctx.domain => {
                    let first = addr.page_number();
                    (first, first.saturating_add(1u64 << order.min(52)))
                }
                _ => continue,
            };
            match d.resync(&mut sync, range) {
                Ok(()) => {}
                Err(Incomplete::Lost) => lost = lost.or(Some(i)),
                Err(e) => result = Err(e),
            }
        }
        result?;
        match lost {
            Some(i) => self.quarantine(i).map(|()| true),
            None => Ok(false),
        }
    }

    /// Takes shadow domain `i`, whose backend lost track of a mapping, out
    /// of service: blocks its devices (then nothing reaches through it) and
    /// destroys it. What it still maps stays pinned (the backend cannot say
    /// what); the devices are attached to a fresh domain by the next
    /// context sync.
    fn quarantine(&mut self, i: usize) -> Result<(), Incomplete> {
        let key = self.domains[i].key;
        for d in self.devices.iter_mut().filter(|d| d.attached == Some(key)) {
            self.backend.detach(d.ids.host).map_err(|_| Incomplete::Pending)?;
            d.attached = None;
        }
        let d = self.domains.swap_remove(i);
        self.backend.destroy_domain(d.host);
        Ok(())
    }

    /// Reads every assigned device's guest context again and moves the
    /// devices whose context changed; then tears down shadow domains no
    /// device uses. `Err` if a device could not be moved or blocked, or a
    /// domain's unmaps not completed.
    fn sync_contexts<G: GuestRam + ?Sized>(
        &mut self,
        unit: &UnitView<'_, G>,
    ) -> Result<(), Incomplete> {
        let mem = unit.memory();
        let mut result = Ok(());
        for i in 0..self.devices.len() {
            let dev = self.devices[i];
            let wanted = self.wanted(unit, dev.ids.guest);
            if wanted == dev.attached {
                continue;
            }
            self.counters.context_changes += 1;
            let target = wanted.and_then(|key| self.domain_for(mem, key));
            let moved = match target {
                Some(d) => self.backend.attach(&mut self.domains[d].host, dev.ids.host),
                None => self.backend.detach(dev.ids.host),
            };
            // A device that could not be moved is blocked, if the backend
            // can do that much.
            let now = match moved {
                Ok(()) => target,
                Err(_) => {
                    self.counters.host_errors += 1;
                    if self.backend.detach(dev.ids.host).is_err() {
                        result = Err(Incomplete::Pending);
                        continue;
                    }
                    None
                }
            };
            if let Some(old) = dev.attached
                && let Some(d) = self.domains.iter_mut().find(|d| d.key == old)
            {
                d.devices -= 1;
            }
            if let Some(d) = now {
                self.domains[d].devices += 1;
            }
            self.devices[i].attached = now.map(|d| self.domains[d].key);
        }
        result.and(self.drop_unused(mem))
    }

    /// The shadow domain `guest`'s context asks for: its translated
    /// context, pass-through (a pass-through context, or translation off)
    /// where the configuration allows it, or none (blocked).
    fn wanted<G: GuestRam + ?Sized>(&self, unit: &UnitView<'_, G>, guest: SourceId) -> Option<Key> {
        let pass_through = self.config.pass_through.then_some(Key::PassThrough);
        if !unit.translation_enabled() {
            return pass_through;
        }
        let root = unit.legacy_root()?;
        let mut ctx = lookup_context(unit.memory(), root, guest, &self.limits).ok()?;
        ctx.domain = self.config.unit.domain(ctx.domain);
        match ctx.translation_type {
            TranslationType::Untranslated => Some(Key::Translated(ctx)),
            TranslationType::PassThrough => pass_through,
            _ => None,
        }
    }

    /// The shadow domain of `key`, created and filled if there is none.
    fn domain_for<G: GuestRam + ?Sized>(&mut self, mem: &G, key: Key) -> Option<usize> {
        if let Some(i) = self.domains.iter().position(|d| d.key == key) {
            return Some(i);
        }
        if self.domains.len() >= self.config.max_domains {
            self.counters.domain_drops += 1;
            return None;
        }
        let host = match self.backend.create_domain() {
            Ok(h) => h,
            Err(_) => {
                self.counters.host_errors += 1;
                return None;
            }
        };
        let mut d = ShadowDomain::new(key, host);
        let (domains, mut sync) = self.split(mem);
        // A new domain has nothing to unmap: the resync cannot stall.
        let _ = d.resync(&mut sync, (0, u64::MAX));
        if let Err(mut d) = domains.try_push(d) {
            // Only without `alloc`, beyond MAX_DOMAINS.
            self.counters.domain_drops += 1;
            let (_, mut sync) = self.split(mem);
            if d.clear(&mut sync).is_ok() {
                self.backend.destroy_domain(d.host);
            }
            return None;
        }
        Some(self.domains.len() - 1)
    }

    /// Empties and destroys the shadow domains no device uses; one whose
    /// unmaps the backend does not complete stays, to be tried again (one
    /// that lost track of a mapping is destroyed all the same: no device
    /// reaches through it).
    fn drop_unused<G: ?Sized>(&mut self, mem: &G) -> Result<(), Incomplete> {
        let mut result = Ok(());
        let mut i = 0;
        while i < self.domains.len() {
            if self.domains[i].devices > 0 {
                i += 1;
                continue;
            }
            let (domains, mut sync) = self.split(mem);
            if domains[i].clear(&mut sync) == Err(Incomplete::Pending) {
                result = Err(Incomplete::Pending);
                i += 1;
                continue;
            }
            let d = self.domains.swap_remove(i);
            self.backend.destroy_domain(d.host);
        }
        result
    }
}

impl<B: HostIommu, R: InterruptRoutes> Shadow<B, R> {
    /// Blocks every device, clears its interrupt routes and tears every
    /// shadow domain down: what the host keeps of a guest that goes away.
    /// Domains whose unmaps the backend does not complete are leaked (their
    /// pages stay pinned) rather than destroyed while reachable.
    pub(crate) fn shutdown(&mut self) {
        self.interrupts.clear_all(&self.devices, &mut self.counters);
        for i in 0..self.devices.len() {
            if self.devices[i].attached.take().is_some()
                && self.backend.detach(self.devices[i].ids.host).is_err()
            {
                self.counters.host_errors += 1;
            }
        }
        for d in self.domains.iter_mut() {
            d.devices = 0;
        }
        let _ = self.drop_unused(&());
    }
}

impl<G: GuestRam + ?Sized, B: HostIommu, R: InterruptRoutes> Hook<G> for Shadow<B, R> {
    fn invalidate(&mut self, unit: &UnitView<'_, G>, inv: Invalidation) -> Outcome {
        let done = match inv {
            Invalidation::ContextCache(_) => {
                self.counters.invalidations_shadowed += 1;
                self.sync_contexts(unit)
            }
            Invalidation::Iotlb(scope) => {
                self.counters.invalidations_shadowed += 1;
                match self.sync_iotlb(unit.memory(), scope) {
                    // A quarantined domain's devices are blocked: attach
                    // them to a fresh domain, filled from the guest's tables.
                    Ok(true) => self.sync_contexts(unit),
                    other => other.map(|_| ()),
                }
            }
            Invalidation::InterruptEntries(scope) => {
                self.counters.invalidations_shadowed += 1;
                let c = &mut self.counters;
                self.interrupts
                    .invalidate(unit, &self.devices, scope, c)
                    .map_err(|_| Incomplete::Pending)
            }
            // The guest unit has no device-TLBs.
            _ => Ok(()),
        };
        match done {
            Ok(()) => Outcome::Complete,
            Err(_) => Outcome::Stall,
        }
    }

    fn changed(&mut self, unit: &UnitView<'_, G>, change: Change) {
        if matches!(change, Change::Reset | Change::RootTable(_) | Change::Translation(_)) {
            // A failure here leaves the device blocked or in its old
            // domain; it is retried at the next context invalidation.
            let _ = self.sync_contexts(unit);
        }
        self.interrupts.changed(unit, &self.devices, change, &mut self.counters);
    }
}
