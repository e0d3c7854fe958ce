"""The Lambda that consumes the region's Kinesis task stream."""
