"""Load prediction: request-rate forecasts with intervals, and the replicas they call for.

Pure: numpy and scikit-learn only.
"""

from engines.forecast.model import Forecast, fit_horizon, forecast
from engines.forecast.replicas import Autoscaler, Recommendation, recommend

__all__ = ["Autoscaler", "Forecast", "Recommendation", "fit_horizon", "forecast", "recommend"]
