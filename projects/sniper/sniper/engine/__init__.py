"""Launch, trainer loop, checkpointing, proposal extraction and multi-scale evaluation."""
