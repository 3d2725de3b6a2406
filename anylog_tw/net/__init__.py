"""Everything that faces the network: peer protocol, REST, consoles."""
