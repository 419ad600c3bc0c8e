"""Vehicles: a fleet of cars and vans, one telematics unit each (6-axis IMU at 100 Hz, GNSS at 1 Hz),
mounted at any orientation.

Modules: `signals` (road-network simulator with drivers' latent risk, CSV readers), `features` (the
device DSP: mounting calibration, event detection, the tiny model's window features), `tiny` (int8
event-window classifier), `large` (driver risk transformer beside the points-per-100-km score),
`hazards` (the road-hazard map the cloud merges from many vehicles' reports), `device` (the telematics
unit in Python), `service` (the cloud's hooks), `scenario` (the demo), `train`, and `hooks` (all of it as
the platform sees it).
"""

from shared.domain import Channel, Domain, Stream

_FS_HZ = 100.0
_TRIP_S = 120.0

DOMAIN = Domain(
    name="vehicles",
    title="vehicle IMU events -> driver crash risk beside points per 100 km, and a road-hazard map",
    package="vehicles",
    channels=(*(Channel(f"acc_{a}", "m/s^2", _FS_HZ) for a in "xyz"),
              *(Channel(f"gyro_{a}", "rad/s", _FS_HZ) for a in "xyz"), Channel("speed", "m/s", 1.0),
              Channel("lat", "deg", 1.0), Channel("lon", "deg", 1.0)),
    window_s=_TRIP_S,
    window_every_s=3600.0,
    labels=("normal", "harsh_brake", "harsh_accel", "harsh_corner", "pothole", "speed_bump", "crash"),
    feature_names=("long_min_mps2", "long_max_mps2", "lat_max_mps2", "long_run_s", "lat_run_s", "vert_min_mps2",
                   "vert_max_mps2", "vert_rms_mps2", "vert_width_s", "pitch_max_rads", "roll_max_rads",
                   "yaw_max_rads", "horiz_peak_mps2", "jerk_max_mps3", "speed_mps", "speed_change_mps"),
    streams={
        "inference": Stream("up", "device", "one trip segment: distance, driving statistics, classified events "
                            "and road anomalies with their positions (QoS 1)"),
        "action": Stream("down", "cloud", "driver crash risk beside points per 100 km, the alert, and the "
                         "confirmed road hazards near the vehicle (QoS 1)"),
    },
    result_stream="action",
    tiny_model="veh-tiny",
    large_model="veh-risk",
    baseline="points per 100 km (vendor-style scorecard)",
    subject="vehicle",
    hooks_ref="vehicles.hooks:Hooks",
)
