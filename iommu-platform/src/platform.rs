//! [`Platform`]: the memory, frames and clock a mapping layer runs on,
//! bundled behind one trait with associated types (as `vm-memory`'s
//! `GuestAddressSpace` carries its memory type), so that a driver that
//! stores a mapping layer names one type for all three.

use crate::clock::Clock;
use crate::mem::{FrameAllocator, PhysMem};

/// What an OS gives the IOMMU crates: the memory translation tables and
/// queues live in, the frames they are built from, and the time deadlines
/// are measured with.
///
/// Each accessor hands out a handle (a reference, a zero-sized type, an
/// `Rc`): the tables of several domains and the invalidation queue share
/// the same memory and frames.
///
/// A tuple `(mem, frames, clock)` is a platform, for tests and small
/// programs; a kernel implements the trait for its own type:
///
/// ```
/// use iommu_platform::{
///     FrameAllocator, MemError, NoClock, PhysAddr, PhysMem, Platform, RegionFrames, TscClock,
/// };
///
/// /// The kernel's direct map of physical memory (a stub here).
/// #[derive(Clone, Copy)]
/// struct DirectMap;
/// impl PhysMem for DirectMap {
///     fn read_u64(&self, a: PhysAddr) -> Result<u64, MemError> {
///         Err(MemError::OutOfRange { addr: a, len: 8 })
///     }
///     fn write_u64(&self, a: PhysAddr, _: u64) -> Result<(), MemError> {
///         Err(MemError::OutOfRange { addr: a, len: 8 })
///     }
///     fn read_bytes(&self, a: PhysAddr, b: &mut [u8]) -> Result<(), MemError> {
///         Err(MemError::OutOfRange { addr: a, len: b.len() })
///     }
///     fn write_bytes(&self, a: PhysAddr, d: &[u8]) -> Result<(), MemError> {
///         Err(MemError::OutOfRange { addr: a, len: d.len() })
///     }
/// }
///
/// static FRAMES: RegionFrames =
///     match RegionFrames::new(PhysAddr::new(0x100_0000), PhysAddr::new(0x200_0000)) {
///         Ok(f) => f,
///         Err(_) => panic!("region"),
///     };
///
/// /// The whole platform, one type.
/// #[derive(Clone, Copy)]
/// struct Kernel {
///     tsc: TscClock,
/// }
/// impl Platform for Kernel {
///     type Mem = DirectMap;
///     type Frames = &'static RegionFrames;
///     type Clock = TscClock;
///     fn mem(&self) -> DirectMap {
///         DirectMap
///     }
///     fn frames(&self) -> &'static RegionFrames {
///         &FRAMES
///     }
///     fn clock(&self) -> TscClock {
///         self.tsc
///     }
/// }
///
/// let kernel = Kernel { tsc: TscClock::from_hz(3_000_000_000).unwrap() };
/// assert!(kernel.frames().allocate(0).is_some());
/// // Or, for a test: a tuple.
/// let quick = (DirectMap, &FRAMES, NoClock);
/// assert!(quick.frames().allocate(0).is_some());
/// ```
pub trait Platform {
    /// Physical memory, where tables and queues live.
    type Mem: PhysMem + Clone;
    /// Frames for tables and queues.
    type Frames: FrameAllocator + Clone;
    /// Monotonic time for deadlines.
    type Clock: Clock + Clone;

    /// A handle to the memory.
    fn mem(&self) -> Self::Mem;
    /// A handle to the frame allocator.
    fn frames(&self) -> Self::Frames;
    /// A handle to the clock.
    fn clock(&self) -> Self::Clock;
}

impl<M, F, C> Platform for (M, F, C)
where
    M: PhysMem + Clone,
    F: FrameAllocator + Clone,
    C: Clock + Clone,
{
    type Mem = M;
    type Frames = F;
    type Clock = C;

    #[inline]
    fn mem(&self) -> M {
        self.0.clone()
    }
    #[inline]
    fn frames(&self) -> F {
        self.1.clone()
    }
    #[inline]
    fn clock(&self) -> C {
        self.2.clone()
    }
}
