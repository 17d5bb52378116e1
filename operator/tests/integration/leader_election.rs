//! Leader election on a real `coordination.k8s.io` Lease.
