//! Wrappers the checks put around a harness's RAM and backend to play a
//! racing guest vCPU and a host IOMMU that does not confirm an unmap.

use core::ops::Range;

use vtd_regs::desc::RawDescriptor;
use vtd_regs::{MemError, PhysAddr, PhysMem, SourceId};

use crate::guest_mem::GuestRam;
use crate::host::{HostIommu, Placed};

/// The guest's RAM, where the next read of one 16-byte queue slot returns
/// its old contents, as a unit fetching while a vCPU rewrites it may see
/// (whether the unit reads the slot as bytes or as two quadwords).
#[derive(Clone)]
pub struct RacyRam<R> {
    inner: R,
    stale: alloc::sync::Arc<spin::Mutex<Stale>>,
}

/// The slot whose old contents are still to be read, and which of its two
/// quadwords are.
#[derive(Default)]
struct Stale {
    slot: Option<(PhysAddr, RawDescriptor)>,
    unread: [bool; 2],
}

impl<R: GuestRam> RacyRam<R> {
    /// `inner` without a stale slot.
    pub fn new(inner: R) -> Self {
        Self { inner, stale: alloc::sync::Arc::default() }
    }

    /// The next read at `slot` returns `old`.
    pub fn stale_once(&self, slot: PhysAddr, old: RawDescriptor) {
        *self.stale.lock() = Stale { slot: Some((slot, old)), unread: [true, true] };
    }

    /// The old quadword `i` of the slot at `addr`, if it is still to be read.
    fn take(&self, addr: PhysAddr, i: usize) -> Option<u64> {
        let mut st = self.stale.lock();
        let (slot, old) = st.slot?;
        if addr.as_u64() != slot.as_u64() + 8 * i as u64 || !st.unread[i] {
            return None;
        }
        st.unread[i] = false;
        Some(if i == 0 { old.qw0() } else { old.qw1() })
    }
}

impl<R: GuestRam> PhysMem for RacyRam<R> {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        let fresh = self.inner.read_u64(addr)?;
        Ok(self.take(addr, 0).or_else(|| self.take(addr, 1)).unwrap_or(fresh))
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.inner.write_u64(addr, value)
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read_bytes(addr, buf)?;
        if buf.len() == 16
            && let Some(q0) = self.take(addr, 0)
        {
            let q1 = self.take(PhysAddr::new(addr.as_u64() + 8), 1).unwrap_or(0);
            buf.copy_from_slice(&RawDescriptor::new(q0, q1).to_le_bytes());
        }
        Ok(())
    }

    fn write_bytes(&self, addr: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.inner.write_bytes(addr, data)
    }
}

impl<R: GuestRam> GuestRam for RacyRam<R> {
    fn ram_from(&self, gpa: PhysAddr) -> Option<Range<PhysAddr>> {
        self.inner.ram_from(gpa)
    }
}

/// A backend whose next completions fail (the host IOMMU did not confirm
/// its invalidation), or whose next unmaps fail without unmapping anything.
pub struct Flaky<B> {
    inner: B,
    completions: u32,
    unmaps: u32,
}

impl<B> Flaky<B> {
    /// `inner`, failing nothing yet.
    pub fn new(inner: B) -> Self {
        Self { inner, completions: 0, unmaps: 0 }
    }

    /// The next `n` completions fail.
    pub fn fail_completions(&mut self, n: u32) {
        self.completions = n;
    }

    /// The next `n` unmaps fail, leaving their ranges mapped.
    pub fn fail_unmaps(&mut self, n: u32) {
        self.unmaps = n;
    }
}

/// The completion a [`Flaky`] backend failed.
#[derive(Debug)]
pub enum FlakyError<E> {
    /// Failed on purpose.
    Injected,
    /// The backend's own.
    Backend(E),
}

impl<B: HostIommu> HostIommu for Flaky<B> {
    type Domain = B::Domain;
    type Error = FlakyError<B::Error>;

    fn create_domain(&mut self) -> Result<B::Domain, Self::Error> {
        self.inner.create_domain().map_err(FlakyError::Backend)
    }

    fn destroy_domain(&mut self, domain: B::Domain) {
        self.inner.destroy_domain(domain)
    }

    fn attach(&mut self, domain: &mut B::Domain, device: SourceId) -> Result<(), Self::Error> {
        self.inner.attach(domain, device).map_err(FlakyError::Backend)
    }

    fn detach(&mut self, device: SourceId) -> Result<(), Self::Error> {
        self.inner.detach(device).map_err(FlakyError::Backend)
    }

    fn map(&mut self, domain: &mut B::Domain, range: Placed) -> Result<(), Self::Error> {
        self.inner.map(domain, range).map_err(FlakyError::Backend)
    }

    fn unmap(&mut self, domain: &mut B::Domain, range: Placed) -> Result<(), Self::Error> {
        if self.unmaps > 0 {
            self.unmaps -= 1;
            return Err(FlakyError::Injected);
        }
        self.inner.unmap(domain, range).map_err(FlakyError::Backend)
    }

    fn complete(&mut self, domain: &mut B::Domain) -> Result<(), Self::Error> {
        if self.completions > 0 {
            self.completions -= 1;
            return Err(FlakyError::Injected);
        }
        self.inner.complete(domain).map_err(FlakyError::Backend)
    }
}
