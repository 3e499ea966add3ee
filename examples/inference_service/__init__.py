"""A small but real torch model service that embeds medic and heals itself."""
