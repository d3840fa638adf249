-- A recorded "no incident" outcome has nothing to work on: it is born resolved (activities/incidents.ts).
UPDATE incidents SET status = 'resolved', resolved_at = created_at, resolved_by = 'system' WHERE kind = 'none' AND status = 'open';
