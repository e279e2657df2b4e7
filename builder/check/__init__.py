"""Judge, never make: the smoke payload run through the engine, image diffs, the host doctor."""
