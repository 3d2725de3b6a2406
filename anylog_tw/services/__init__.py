"""Background processes of a node: base class, periodic work, scheduler, HA."""
