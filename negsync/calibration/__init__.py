"""``negsync calibrate``: measure what the load balancer did and turn it into simulator distributions.

Each simulator parameter is defined as an *observable* (:mod:`negsync.calibration.observables`),
and calibration measures that observable, never a proxy for it such as an API call's duration.
The sources, one module each:

* :mod:`~negsync.calibration.timeline`: negsync's own per-endpoint timeline (detach issued and
  done, attach done and first healthy), emitted by the controller as JSON log lines;
* :mod:`~negsync.calibration.accesslogs`: the load balancer's request logs (AWS ALB access logs,
  GCP external Application LB request logs exported from Cloud Logging), which say when the LB
  routed a request to which endpoint;
* :mod:`~negsync.calibration.propagation`: the join of the two: how long after a detach the LB
  kept routing, how long after an attach it started;
* :mod:`~negsync.calibration.prometheus` and :mod:`~negsync.calibration.samplecsv`: the
  controller's histograms (``--from``), which can calibrate fewer parameters;
* :mod:`~negsync.calibration.command`: the CLI, which writes a calibrated scenario.

This package imports neither Kubernetes nor a cloud SDK (the controller imports
:mod:`~negsync.calibration.timeline` to emit the timeline, so that module stays light).
"""
