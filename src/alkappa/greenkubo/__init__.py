"""Green-Kubo thermal conductivity: heat flux, production MD, analysis."""
