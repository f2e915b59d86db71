//! The one error type of the crate.

use core::fmt;

/// A VFIO operation: an ioctl, or a system call on a VFIO file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening `/dev/vfio/vfio`.
    OpenContainer,
    /// Opening `/dev/vfio/<group>`.
    OpenGroup,
    /// Reading a device's IOMMU group from sysfs.
    ReadIommuGroup,
    /// `VFIO_GET_API_VERSION`.
    GetApiVersion,
    /// `VFIO_CHECK_EXTENSION`.
    CheckExtension,
    /// `VFIO_SET_IOMMU`.
    SetIommu,
    /// `VFIO_IOMMU_GET_INFO`.
    IommuGetInfo,
    /// `VFIO_GROUP_GET_STATUS`.
    GroupGetStatus,
    /// `VFIO_GROUP_SET_CONTAINER`.
    GroupSetContainer,
    /// `VFIO_GROUP_GET_DEVICE_FD`.
    GroupGetDeviceFd,
    /// `VFIO_DEVICE_GET_INFO`.
    DeviceGetInfo,
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    DeviceGetRegionInfo,
    /// `VFIO_IOMMU_MAP_DMA`.
    MapDma,
    /// `VFIO_IOMMU_UNMAP_DMA`.
    UnmapDma,
    /// A `pread` of a device region.
    RegionRead,
    /// A `pwrite` of a device region.
    RegionWrite,
}

/// What can go wrong with a VFIO container, group or device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused an operation (`errno`).
    Os {
        /// The operation.
        op: Op,
        /// The kernel's error number.
        errno: i32,
    },
    /// The container speaks another VFIO API version.
    ApiVersion {
        /// The version the kernel reported.
        found: i32,
    },
    /// The kernel has no type1v2 IOMMU driver (`vfio_iommu_type1` not
    /// loaded, or no IOMMU).
    NoType1v2,
    /// The group holds a device not bound to a VFIO driver (or none at
    /// all): it cannot be used.
    GroupNotViable {
        /// The group.
        group: u32,
    },
    /// A device address or name the kernel cannot take.
    BadDeviceName,
    /// An IOVA, address or length not aligned to the IOMMU's smallest page
    /// (4 KiB), zero, or wrapping.
    Misaligned {
        /// The IOVA.
        iova: u64,
        /// The length.
        len: u64,
    },
    /// A map with neither read nor write permission.
    NoPermission,
    /// A map that overlaps a mapping already in the container.
    Overlap {
        /// The IOVA asked for.
        iova: u64,
        /// The length asked for.
        len: u64,
    },
    /// The kernel unmapped another amount than the mappings the container
    /// tracks in the range (something else mapped or unmapped it).
    UnmapMismatch {
        /// Bytes the tracked mappings cover.
        expected: u64,
        /// Bytes the kernel unmapped.
        unmapped: u64,
    },
    /// A region access outside the region, or a region the device lacks or
    /// that refuses the access.
    RegionAccess {
        /// The region index.
        index: u32,
        /// Offset of the access in the region.
        offset: u64,
        /// Length of the access.
        len: u64,
    },
    /// A guest-physical range that is not wholly guest RAM (feature
    /// `vm-memory`), or not one region of it.
    OutsideGuestRam {
        /// First byte.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// A device no container of the backend holds (feature `viommu`).
    UnknownDevice {
        /// Its host source id (bus << 8 | device << 3 | function).
        source_id: u16,
    },
    /// A device added with a second container (feature `viommu`).
    DuplicateDevice {
        /// Its host source id.
        source_id: u16,
    },
    /// A device whose group-mates (devices of the same container) are
    /// attached to another host domain, or stay attached while it would be
    /// detached: type1 translates a whole group alike (feature `viommu`).
    SharedGroup {
        /// Its host source id.
        source_id: u16,
    },
}

impl Error {
    /// The `errno` of the last failed system call, as an [`Error::Os`].
    pub(crate) fn last_os(op: Op) -> Self {
        Error::Os { op, errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os { op, errno } => {
                write!(f, "{op:?} failed: {}", std::io::Error::from_raw_os_error(*errno))
            }
            Error::ApiVersion { found } => write!(f, "VFIO API version {found}, expected 0"),
            Error::NoType1v2 => write!(f, "no VFIO type1v2 IOMMU (is vfio_iommu_type1 loaded?)"),
            Error::GroupNotViable { group } => {
                write!(f, "VFIO group {group} is not viable: bind every device in it to vfio-pci")
            }
            Error::BadDeviceName => write!(f, "device name not usable with VFIO"),
            Error::Misaligned { iova, len } => {
                write!(f, "DMA range {iova:#x}+{len:#x} is empty, wraps, or is not 4 KiB aligned")
            }
            Error::NoPermission => write!(f, "a DMA map needs read or write permission"),
            Error::Overlap { iova, len } => {
                write!(f, "DMA range {iova:#x}+{len:#x} overlaps an existing mapping")
            }
            Error::UnmapMismatch { expected, unmapped } => {
                write!(f, "the kernel unmapped {unmapped:#x} bytes where {expected:#x} were mapped")
            }
            Error::RegionAccess { index, offset, len } => {
                write!(f, "access {offset:#x}+{len:#x} to device region {index} refused")
            }
            Error::OutsideGuestRam { gpa, len } => {
                write!(f, "guest-physical range {gpa:#x}+{len:#x} is not guest RAM")
            }
            Error::UnknownDevice { source_id } => {
                write!(f, "device {source_id:#06x} is in no container of the backend")
            }
            Error::DuplicateDevice { source_id } => {
                write!(f, "device {source_id:#06x} is in a container of the backend already")
            }
            Error::SharedGroup { source_id } => write!(
                f,
                "device {source_id:#06x} shares its VFIO container with devices in another domain"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
