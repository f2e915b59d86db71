//! Wrappers the checks put around a harness's RAM and backend to play a
//! racing guest vCPU and a host IOMMU that does not confirm an unmap.

use core::ops::Range;

use vtd_regs::desc::RawDescriptor;
use vtd_regs::{MemError, PhysAddr, PhysMem, SourceId};

use crate::guest_mem::GuestRam;
use crate::host::{HostIommu, Placed};

/// The guest's RAM, where the next read of one 16-byte queue slot returns
/// its old contents, as a unit fetching while a vCPU rewrites it may see.
#[derive(Clone)]
pub struct RacyRam<R> {
    inner: R,
    stale: alloc::sync::Arc<spin::Mutex<Option<(PhysAddr, RawDescriptor)>>>,
}

impl<R: GuestRam> RacyRam<R> {
    /// `inner` without a stale slot.
    pub fn new(inner: R) -> Self {
        Self { inner, stale: alloc::sync::Arc::default() }
    }

    /// The next 16-byte read at `slot` returns `old`.
    pub fn stale_once(&self, slot: PhysAddr, old: RawDescriptor) {
        *self.stale.lock() = Some((slot, old));
    }
}

impl<R: GuestRam> PhysMem for RacyRam<R> {
    fn read_u64(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.inner.read_u64(addr)
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.inner.write_u64(addr, value)
    }

    fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read_bytes(addr, buf)?;
        let mut stale = self.stale.lock();
        if let Some((slot, old)) = *stale
            && slot == addr
            && buf.len() == 16
        {
            buf.copy_from_slice(&old.to_le_bytes());
            *stale = None;
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
/// its invalidation).
pub struct Flaky<B> {
    inner: B,
    failures: u32,
}

impl<B> Flaky<B> {
    /// `inner`, failing nothing yet.
    pub fn new(inner: B) -> Self {
        Self { inner, failures: 0 }
    }

    /// The next `n` completions fail.
    pub fn fail_completions(&mut self, n: u32) {
        self.failures = n;
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
        self.inner.unmap(domain, range).map_err(FlakyError::Backend)
    }

    fn complete(&mut self, domain: &mut B::Domain) -> Result<(), Self::Error> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(FlakyError::Injected);
        }
        self.inner.complete(domain).map_err(FlakyError::Backend)
    }
}
