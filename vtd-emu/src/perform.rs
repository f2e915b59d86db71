//! Performing an invalidation, queued (§6.5.2) or register-based (§6.5.1):
//! the scope the unit actually performs, the embedder's [`Hook`], then the
//! unit's own caches. One path for both interfaces, so the hook sees
//! exactly what the caches drop.

use vtd_regs::desc::{IecScope, PasidCacheScope, PasidIotlbInv, PasidIotlbScope};
use vtd_regs::{ContextScope, IotlbScope, PhysMem};

use crate::emulator::State;
use crate::hook::{Change, Hook, Invalidation, Outcome};

impl<const I: usize, const C: usize, H> State<I, C, H> {
    /// The invalidation the unit performs for the request `inv`: domain ids
    /// cut to the implemented bits (§10.4.7, §10.4.8.1), a page-selective
    /// IOTLB request widened to its domain on a unit without CAP.PSI;
    /// `None` for a page-selective one whose address mask exceeds CAP.MAMV,
    /// which the unit refuses; an index-selective interrupt entry cache
    /// request whose index mask exceeds ECAP.MHMV widened to a global one
    /// (a superset: nothing stale survives it).
    // Inlined (as `Descriptor::decode_with` is) so that the scope reaches
    // the hook in registers rather than through a copy of a value just
    // written field by field, which stalls the reload.
    #[inline(always)]
    pub(crate) fn performed(&self, inv: Invalidation) -> Option<Invalidation> {
        let cap = self.cfg.cap;
        Some(match inv {
            Invalidation::ContextCache(scope) => Invalidation::ContextCache(match scope {
                ContextScope::Global => ContextScope::Global,
                ContextScope::Domain(d) => ContextScope::Domain(self.cfg.domain(d)),
                ContextScope::Device { domain, source, function_mask } => {
                    ContextScope::Device { domain: self.cfg.domain(domain), source, function_mask }
                }
            }),
            Invalidation::Iotlb(scope) => Invalidation::Iotlb(match scope {
                IotlbScope::Global => IotlbScope::Global,
                IotlbScope::Domain(d) => IotlbScope::Domain(self.cfg.domain(d)),
                IotlbScope::Pages { domain, .. } if !cap.psi() => {
                    IotlbScope::Domain(self.cfg.domain(domain))
                }
                IotlbScope::Pages { order, .. } if order > cap.mamv().max_order() => return None,
                IotlbScope::Pages { domain, addr, order, leaf_only } => {
                    IotlbScope::Pages { domain: self.cfg.domain(domain), addr, order, leaf_only }
                }
            }),
            Invalidation::PasidCache(scope) => Invalidation::PasidCache(match scope {
                PasidCacheScope::Global => PasidCacheScope::Global,
                PasidCacheScope::Domain(d) => PasidCacheScope::Domain(self.cfg.domain(d)),
                PasidCacheScope::Pasid { domain, pasid } => {
                    PasidCacheScope::Pasid { domain: self.cfg.domain(domain), pasid }
                }
            }),
            Invalidation::PasidIotlb(inv) => {
                if let PasidIotlbScope::Pages { order, .. } = inv.scope
                    && order > cap.mamv().max_order()
                {
                    return None;
                }
                Invalidation::PasidIotlb(PasidIotlbInv {
                    domain: self.cfg.domain(inv.domain),
                    ..inv
                })
            }
            Invalidation::InterruptEntries(IecScope::Entries { mask, .. })
                if mask > self.cfg.ecap.mhmv() =>
            {
                Invalidation::InterruptEntries(IecScope::Global)
            }
            other => other,
        })
    }

    /// Tells the hook the unit is about to perform `inv` (as
    /// [`performed`](Self::performed) gives it); if it lets it, drops the
    /// cached entries `inv` covers.
    pub(crate) fn perform<M: ?Sized>(&mut self, mem: &M, inv: Invalidation) -> Outcome
    where
        H: Hook<M>,
    {
        let (hook, view) = self.hook_and_view(mem);
        if hook.invalidate(&view, inv) == Outcome::Stall {
            return Outcome::Stall;
        }
        match inv {
            Invalidation::ContextCache(scope) => {
                self.contexts.invalidate(scope);
                self.scalable.invalidate_contexts(scope);
            }
            Invalidation::Iotlb(scope) => {
                self.iotlb.invalidate(scope);
                self.scalable.invalidate_iotlb(scope);
            }
            Invalidation::PasidCache(scope) => self.scalable.invalidate_pasids(scope),
            Invalidation::PasidIotlb(inv) => self.scalable.invalidate_pasid_iotlb(inv),
            Invalidation::InterruptEntries(scope) => {
                self.iec.invalidate(scope);
            }
            // The model keeps no device-TLB.
            _ => {}
        }
        Outcome::Complete
    }

    /// Tells the hook about `change`, with the unit's state after it.
    pub(crate) fn announce<M: PhysMem + ?Sized>(&mut self, mem: &M, change: Change)
    where
        H: Hook<M>,
    {
        let (hook, view) = self.hook_and_view(mem);
        hook.changed(&view, change);
    }
}
