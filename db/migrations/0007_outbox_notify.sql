-- The relay listens on this channel: a commit that wrote events wakes it at once (NOTIFY is sent
-- on commit, once per transaction and channel), so delivery does not wait for a polling interval.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('governed_outbox', '');
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
