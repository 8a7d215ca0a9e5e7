//! Helpers shared by the black-box API tests.
