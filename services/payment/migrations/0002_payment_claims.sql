-- When the current charge attempt of a PENDING payment was claimed: an attempt whose claim
-- grows old was abandoned by a crashed process, and recovery settles it.
ALTER TABLE payments ADD COLUMN claimed_at TIMESTAMPTZ;

UPDATE payments SET claimed_at = updated_at WHERE status = 'PENDING';

CREATE INDEX payments_pending_claims ON payments (claimed_at) WHERE status = 'PENDING';
