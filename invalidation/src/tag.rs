//! Which IOTLB entries an unmap leaves stale: the tag a flush invalidates
//! by (VT-d §6.2.3, §6.5.2.3, §6.5.2.4).
//!
//! A unit caches a translation tagged with how it was made. Second-stage
//! (and legacy-mode) translations are tagged by domain, and an IOTLB
//! invalidation (descriptor type 2) of the domain drops them. First-stage
//! and nested translations of a scalable-mode unit are tagged by domain
//! *and* PASID, and only a PASID-based IOTLB invalidation (type 6) of that
//! PASID drops them: a type-2 page-selective invalidation leaves them
//! cached (§6.5.2.3: it covers second-stage mappings; Linux
//! `intel_flush_iotlb_all`/`cache_tag_flush_range` pick `qi_flush_piotlb`
//! for a first-stage domain). A mapper over first-stage tables therefore
//! flushes by [`Tag::Pasid`].

use vtd_regs::desc::{Pasid, PasidIotlbInv, PasidIotlbScope};
use vtd_regs::{DomainId, Drain, IotlbScope};

use crate::request::Invalidation;

/// The tag of the translations an unmapped range may still have cached.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Tag {
    /// Second-stage or legacy translations of a domain: IOTLB
    /// invalidations (type 2).
    Domain(DomainId),
    /// First-stage or nested translations of one PASID in a domain:
    /// PASID-based IOTLB invalidations (type 6).
    Pasid {
        /// The domain id of the PASID entry.
        domain: DomainId,
        /// The PASID the table is installed at (RID_PASID for requests
        /// without a PASID).
        pasid: Pasid,
    },
}

impl From<DomainId> for Tag {
    fn from(domain: DomainId) -> Self {
        Tag::Domain(domain)
    }
}

impl Tag {
    /// The domain id.
    pub const fn domain(self) -> DomainId {
        match self {
            Tag::Domain(domain) | Tag::Pasid { domain, .. } => domain,
        }
    }

    /// The invalidation of `scope` (one of [`PageBlocks`](crate::PageBlocks)'s
    /// page-selective scopes of this tag's domain) for this tag: the IOTLB
    /// one for a domain (with `drain`), the PASID-based page-selective one
    /// (same address, AM and IH) for a PASID. Any other scope is the whole
    /// tag ([`whole`](Self::whole)).
    pub const fn page(self, scope: IotlbScope, drain: Drain) -> Invalidation {
        match (self, scope) {
            (Tag::Domain(_), scope) => Invalidation::Iotlb { scope, drain },
            (Tag::Pasid { domain, pasid }, IotlbScope::Pages { addr, order, leaf_only, .. }) => {
                let scope = PasidIotlbScope::Pages { addr, order, leaf_only };
                Invalidation::PasidIotlb(PasidIotlbInv { domain, pasid, scope })
            }
            (Tag::Pasid { .. }, _) => self.whole(drain),
        }
    }

    /// The invalidation of everything this tag caches: domain-selective
    /// IOTLB, or PASID-selective PASID-based IOTLB.
    pub const fn whole(self, drain: Drain) -> Invalidation {
        match self {
            Tag::Domain(domain) => Invalidation::Iotlb { scope: IotlbScope::Domain(domain), drain },
            Tag::Pasid { domain, pasid } => Invalidation::PasidIotlb(PasidIotlbInv {
                domain,
                pasid,
                scope: PasidIotlbScope::Pasid,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_regs::Iova;

    #[test]
    fn first_stage_pages_become_pasid_based_pages_with_the_same_am_and_ih() {
        // §6.5.2.4: type 6 granularity 11b carries ADDR, AM and IH as
        // type 2's page-selective request does (§6.5.2.3).
        let d = DomainId::new(5);
        let pasid = Pasid::new(0x42).unwrap();
        let scope = IotlbScope::pages(d, Iova::new(0x20_0000), 9, true).unwrap();
        let tag = Tag::Pasid { domain: d, pasid };
        let addr = Iova::new(0x20_0000);
        let want = PasidIotlbScope::Pages { addr, order: 9, leaf_only: true };
        assert_eq!(
            tag.page(scope, Drain::empty()),
            Invalidation::PasidIotlb(PasidIotlbInv { domain: d, pasid, scope: want })
        );
        assert_eq!(
            Tag::from(d).page(scope, Drain::empty()),
            Invalidation::Iotlb { scope, drain: Drain::empty() }
        );
        assert!(matches!(
            tag.whole(Drain::empty()),
            Invalidation::PasidIotlb(PasidIotlbInv { scope: PasidIotlbScope::Pasid, .. })
        ));
    }
}
