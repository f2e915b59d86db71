//! The two interrupt sources of the unit: fault events (FECTL/FEDATA/FEADDR/
//! FEUADDR, VT-d §7.3, §10.4.10-§10.4.13) and invalidation completion events
//! (IECTL/IEDATA/IEADDR/IEUADDR, §6.5.2.9, §10.4.25-§10.4.28).
//!
//! An event is sent as an MSI unless IM masks it; a masked event sets IP
//! and is sent when software clears IM, or forgotten (IP cleared) when
//! software clears the status that caused it first. A sent message waits in
//! a one-deep slot for the front end (a hypervisor injecting it, a test
//! checking it); messages are edge-triggered, so a second one before the
//! first is taken merges with it, as on an interrupt controller.

use vtd_regs::regs::{EventControl, EventMessage};

/// One event register group and its delivery state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventSource {
    control: EventControl,
    /// The data register.
    pub(crate) data: u32,
    /// The address register (bits 1:0 read as zero).
    pub(crate) address: u32,
    /// The upper address register.
    pub(crate) upper: u32,
    sent: Option<EventMessage>,
    delivered: u64,
}

impl EventSource {
    /// The reset state: IM set, nothing pending (§10.4.10).
    pub(crate) fn new() -> Self {
        Self {
            control: EventControl(0).with_im(true),
            data: 0,
            address: 0,
            upper: 0,
            sent: None,
            delivered: 0,
        }
    }

    /// The control register as read: IM and IP.
    pub(crate) fn control(&self) -> u32 {
        EventControl(0).with_im(self.control.im()).with_ip(self.control.ip()).0
    }

    /// Software wrote the control register: only IM is writable; clearing IM
    /// sends a pending message.
    pub(crate) fn write_control(&mut self, value: u32) {
        let im = EventControl(value).im();
        self.control = self.control.with_im(im);
        if !im && self.control.ip() {
            self.control = self.control.with_ip(false);
            self.send();
        }
    }

    /// The condition the event reports arose.
    pub(crate) fn raise(&mut self) {
        if self.control.im() {
            self.control = self.control.with_ip(true);
        } else {
            self.send();
        }
    }

    /// Software cleared every status bit this event reports: a pending
    /// (masked) message is dropped.
    pub(crate) fn settle(&mut self) {
        self.control = self.control.with_ip(false);
    }

    fn send(&mut self) {
        self.delivered += 1;
        self.sent = Some(EventMessage {
            data: self.data,
            address: (u64::from(self.upper) << 32) | u64::from(self.address),
        });
    }

    /// Takes the message sent, if any.
    pub(crate) fn take(&mut self) -> Option<EventMessage> {
        self.sent.take()
    }

    /// Messages sent so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Restarts the count of messages sent.
    pub(crate) fn reset_delivered(&mut self) {
        self.delivered = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_pend_and_unmask() {
        let mut e = EventSource::new();
        e.data = 0x41;
        e.address = 0xfee0_0000;
        // Masked at reset: the event pends.
        e.raise();
        assert_eq!(e.control(), EventControl(0).with_im(true).with_ip(true).0);
        assert_eq!(e.take(), None);
        // Unmasking sends it.
        e.write_control(0);
        assert_eq!(e.take(), Some(EventMessage { data: 0x41, address: 0xfee0_0000 }));
        assert_eq!(e.control(), 0);
        // Unmasked: sent at once; IP is read-only.
        e.write_control(EventControl(0).with_ip(true).0);
        e.raise();
        assert!(e.take().is_some());
        assert_eq!(e.control(), 0);
        // A pending event is forgotten once its status is cleared.
        e.write_control(EventControl(0).with_im(true).0);
        e.raise();
        e.settle();
        e.write_control(0);
        assert_eq!(e.take(), None);
        assert_eq!(e.delivered(), 2);
    }
}
