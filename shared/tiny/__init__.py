"""The device side: train -> int8 -> budget, the TFLite -> C compiler, firmware builds, gateway, frames."""
