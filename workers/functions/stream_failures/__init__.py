"""The Lambda that drains the Kinesis stream-failure queue: the tasks of batches the
stream worker's event source gave up on are read back from the stream and re-driven to
the heavy queue."""
