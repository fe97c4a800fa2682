-- Each event's number in its session (1, 2, 3 ... in the order the session's chain saw
-- it, counting events later lost). Live subscribers get the same numbers, so a
-- subscriber that replays the stored events first knows where the live ones take over.
-- Events stored before this have none.
ALTER TABLE events ADD COLUMN seq INTEGER;
