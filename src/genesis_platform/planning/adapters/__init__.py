"""Optional planners backed by other optimization libraries, built through the ``Planner`` protocol.

``ax`` (:class:`~genesis_platform.planning.adapters.ax.AxPlanner`, extra ``planners-ax``) and
``optuna`` (:class:`~genesis_platform.planning.adapters.optuna.OptunaPlanner`, extra
``planners-optuna``). Each module imports its library only when a planner is built, so this
package imports without them.
"""
