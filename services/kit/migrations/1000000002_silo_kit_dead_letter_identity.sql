-- Dead letters become idempotent: recording the same message twice (the
-- consumer recorded it, then lost the Term and got it redelivered) keeps one row.
-- A message is identified by its event id or, when the payload had none,
-- by its place in the stream.

ALTER TABLE dead_letters
    ADD COLUMN stream          text,
    ADD COLUMN stream_sequence bigint;

-- Keep the first of any duplicates recorded before this migration.
DELETE FROM dead_letters later
    USING dead_letters earlier
    WHERE later.consumer = earlier.consumer
      AND later.event_id = earlier.event_id
      AND later.id > earlier.id;

CREATE UNIQUE INDEX dead_letters_consumer_event
    ON dead_letters (consumer, event_id) WHERE event_id IS NOT NULL;

CREATE UNIQUE INDEX dead_letters_consumer_position
    ON dead_letters (consumer, stream, stream_sequence)
    WHERE event_id IS NULL AND stream_sequence IS NOT NULL;

-- Retention cleanup deletes by age.
CREATE INDEX dead_letters_dead_at ON dead_letters (dead_at);
