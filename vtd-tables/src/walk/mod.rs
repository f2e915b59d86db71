//! A read-only walker over translation structures it does not trust (VT-d
//! §3.4, §3.7): a guest's tables for an emulator, or a driver's tables for
//! anyone checking them.
//!
//! The walk is split as a remapping unit's caches split it:
//! [`lookup_context`] reads the root and context entries of a source id and
//! gives the [`ContextInfo`] a context cache keeps; [`walk_second_level`]
//! then walks the domain's second-level table for one IOVA after a context
//! cache hit. [`walk`] does both.
//!
//! Whatever the memory holds, the walker never panics, reads at most
//! [`MAX_WALK_READS`] words (a level never repeats, so cycles and entries that
//! point at themselves only lead deeper until the last level), and reports
//! the VT-d fault reason (Appendix A) a unit would record.
//!
//! Scalable mode ([`scalable`]) splits the same way, with a PASID cache's
//! step between context and translation, and walks first-stage tables
//! alone or nested over the second stage, whose one walker
//! ([`walk_second_level`]) it reuses.

mod context;
mod first_stage;
mod limits;
pub mod scalable;
mod second_level;

pub use context::{ContextInfo, lookup_context};
pub use limits::WalkLimits;
pub use scalable::{
    MAX_SCALABLE_WALK_READS, PasidInfo, PasidTranslation, Request, ScalableContextInfo,
    ScalableLimits, effective_pasid, lookup_pasid, lookup_scalable_context, walk_pasid,
    walk_scalable,
};
pub use second_level::{walk_second_level, walk_second_level_any};

use vtd_regs::{FaultReason, Iova, PhysAddr, PhysMem, SourceId};

use crate::perm::Access;
use crate::translation::Translation;

/// The most 64-bit reads one [`walk`] makes: two for the root entry, two
/// for the context entry, one per level of a 5-level table.
pub const MAX_WALK_READS: usize = 2 + 2 + 5;

/// Why a walk did not translate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fault {
    /// The VT-d fault reason (Appendix A).
    pub reason: FaultReason,
    /// The second-level table level (1 = last) whose entry caused it, or
    /// `None` for a fault in the root or context entry or the address
    /// width check.
    pub level: Option<u8>,
    /// The context entry's FPD bit: the fault is not to be recorded or
    /// reported (§7.1.2). Always `false` before a context entry was read.
    pub fpd: bool,
}

impl From<FaultReason> for Fault {
    #[inline]
    fn from(reason: FaultReason) -> Self {
        Fault { reason, level: None, fpd: false }
    }
}

/// Translates `iova` for a request of kind `access` from `sid` through the
/// legacy-mode root table at `root_table`: [`lookup_context`] then
/// [`walk_second_level`]. Returns the context too, for a context cache.
pub fn walk<M: PhysMem + ?Sized>(
    mem: &M,
    root_table: PhysAddr,
    sid: SourceId,
    iova: Iova,
    access: Access,
    limits: &WalkLimits,
) -> Result<(ContextInfo, Translation), Fault> {
    let ctx = lookup_context(mem, root_table, sid, limits)?;
    let t = walk_second_level(mem, &ctx, iova, access, limits)?;
    Ok((ctx, t))
}
