"""Test payload: records what a job's payload sees of its calibrations (environment, km3_calibration.json, the
files' bytes) in seen_calibration.json, an output of the job."""

import json
import os
from pathlib import Path

seen = {key: value for key, value in os.environ.items() if key.startswith("KM3_CALIB_")}
description = json.loads(Path(seen["KM3_CALIB_FILE"]).read_text()) if "KM3_CALIB_FILE" in seen else None
contents = {key: Path(value).read_text() for key, value in seen.items() if key != "KM3_CALIB_FILE"}
Path("seen_calibration.json").write_text(json.dumps({"env": seen, "file": description, "contents": contents}))
