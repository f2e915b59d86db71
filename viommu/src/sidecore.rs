//! The sidecore front end (in progress).
