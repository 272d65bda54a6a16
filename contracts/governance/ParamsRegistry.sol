// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IParamsRegistry} from "../interfaces/IParamsRegistry.sol";

/**
 * @title ParamsRegistry, the governance-owned parameters of the reward boost engine
 * @notice One on-chain source for the parameter table of docs/rewards.md, so that every settler closing an
 * epoch reads the same values (at the same block) and therefore computes the same Merkle root. The owner is
 * the TimelockController, so a change passes a Governor vote and the timelock delay.
 *
 * Names are exactly the spec's (`epoch_hours`, `lambda_up_bps`, ...). Every value is a uint256:
 * - amounts (`min_lifetime`, `earnings_floor`, `validator_min_bond`, `comp_min_account_earnings`,
 *   `comp_min_total_earnings`, `epoch_emission_cap`) are wei of POD;
 * - `alpha` and `tiers_kappa`, which the spec writes as a decimal string and a rational string, are stored
 *   as 18-decimal fixed point (WAD): value / 1e18 exactly, so `alpha = 0.75` is 750000000000000000 and
 *   `tiers_kappa = 1` is 1000000000000000000. A settler converts with exact arithmetic
 *   (`Decimal(v) / 10**18`, `Fraction(v, 10**18)`), never through a float;
 * - everything else is the spec's integer as is.
 *
 * Each parameter has fixed bounds chosen at deployment (tighter than the off-chain checks where the
 * whitepaper recommends a range); relations between parameters (lambda_down < lambda_up, exit <= enter
 * weeks, tiers_min <= tiers_max, epoch_hours divides 168) are checked after every change, so a batch can
 * move two related parameters together.
 */
contract ParamsRegistry is IParamsRegistry, Ownable {
    /// @dev The WAD scale of `alpha` and `tiers_kappa`.
    uint256 public constant FIXED_POINT_ONE = 1e18;

    uint256 private constant _POD = 1e18;
    uint256 private constant _HOURS_PER_WEEK = 168;

    struct Param {
        uint256 value;
        uint256 min;
        uint256 max;
        bool known;
    }

    string[] private _names;
    mapping(bytes32 nameHash => Param) private _params;

    /// @dev `name` is not a parameter of docs/rewards.md.
    error ParamsRegistryUnknownParam(string name);
    /// @dev `value` lies outside the parameter's fixed bounds [min, max].
    error ParamsRegistryOutOfBounds(string name, uint256 value, uint256 min, uint256 max);
    /// @dev The new value breaks a relation with another parameter (named in `rule`).
    error ParamsRegistryInconsistent(string name, string rule);
    /// @dev A batch's name and value lists differ in length.
    error ParamsRegistryLengthMismatch(uint256 names, uint256 values);

    /// @dev Emitted after each change, with the value it replaced.
    event ParamSet(string name, uint256 oldValue, uint256 newValue);

    /// @param owner_ the TimelockController that governs the parameters
    constructor(address owner_) Ownable(owner_) {
        // name, default (docs/rewards.md), min, max
        _define("epoch_hours", 24, 12, _HOURS_PER_WEEK); // whitepaper: 12 h is the shortest recommended epoch
        _define("lambda_up_bps", 5000, 1, 10000);
        _define("lambda_down_bps", 1000, 1, 10000);
        _define("min_history_epochs", 7, 1, 1000);
        _define("min_lifetime", 50 * _POD, 0, 1_000_000 * _POD);
        _define("earnings_floor", 1 * _POD, 1, 1_000_000 * _POD); // divides: never zero
        _define("boost_cap_bps", 30000, 1, 100000);
        _define("full_weeks", 13, 1, 104);
        _define("validator_enter_weeks", 13, 1, 104);
        _define("validator_exit_weeks", 10, 0, 104);
        // The one home of the validator minimum: ValidatorQuorum reads it when validators join and when an
        // elected set is installed, and settlers read it for the election.
        _define("validator_min_bond", 100_000 * _POD, 1_000 * _POD, 10_000_000 * _POD);
        _define("comp_weeks", 13, 1, 104);
        _define("percentile", 95, 1, 100);
        _define("alpha", 75e16, 1, 10 * FIXED_POINT_ONE); // (0, 10], the off-chain engine's range
        _define("comp_min_accounts", 10, 1, 100_000);
        _define("comp_min_account_earnings", 10 * _POD, 0, 1_000_000_000 * _POD);
        _define("comp_min_total_earnings", 1000 * _POD, 0, 1_000_000_000 * _POD);
        _define("tiers_kappa", 1 * FIXED_POINT_ONE, 1, 100 * FIXED_POINT_ONE);
        _define("tiers_min", 3, 2, 100); // tiers divide by K - 1
        _define("tiers_max", 11, 2, 100);
        _define("base_boost_bps", 2000, 0, 10000);
        _define("comp_boost_bps", 1000, 0, 10000);
        _define("max_multiplier_bps", 13000, 10000, 30000); // B >= 1, and never above 3x
        // Base rewards (docs/rewards.md, "Base rewards"): an epoch emits at most this share of its paid
        // revenue, valued in POD, and never more than the cap. Above 6993 bps, paying one's own node
        // returns more than it costs (1.3x boost, 10% bonded-claim bonus): governance's deliberate subsidy.
        _define("emission_revenue_bps", 5000, 0, 100000);
        _define("epoch_emission_cap", 500_000 * _POD, 0, 10_000_000 * _POD);
        _checkRelations();
    }

    /// @notice Sets one parameter. Reverts outside its bounds or when it breaks a relation.
    function setParam(string calldata name, uint256 value) external onlyOwner {
        _set(name, value);
        _checkRelations();
    }

    /// @notice Sets several parameters at once; relations are checked on the result, not in between.
    function setParams(string[] calldata names_, uint256[] calldata values_) external onlyOwner {
        if (names_.length != values_.length) revert ParamsRegistryLengthMismatch(names_.length, values_.length);
        for (uint256 i = 0; i < names_.length; ++i) {
            _set(names_[i], values_[i]);
        }
        _checkRelations();
    }

    /// @inheritdoc IParamsRegistry
    function valueOf(string calldata name) external view returns (uint256) {
        return _param(name).value;
    }

    /// @notice The fixed bounds of `name`.
    function boundsOf(string calldata name) external view returns (uint256 min, uint256 max) {
        Param storage param = _param(name);
        return (param.min, param.max);
    }

    /// @inheritdoc IParamsRegistry
    function getAll() external view returns (string[] memory names, uint256[] memory values) {
        names = _names;
        values = new uint256[](names.length);
        for (uint256 i = 0; i < names.length; ++i) {
            values[i] = _params[keccak256(bytes(names[i]))].value;
        }
    }

    function _define(string memory name, uint256 value, uint256 min, uint256 max) private {
        _names.push(name);
        _params[keccak256(bytes(name))] = Param({value: value, min: min, max: max, known: true});
        if (value < min || value > max) revert ParamsRegistryOutOfBounds(name, value, min, max);
    }

    function _set(string calldata name, uint256 value) private {
        Param storage param = _param(name);
        if (value < param.min || value > param.max) {
            revert ParamsRegistryOutOfBounds(name, value, param.min, param.max);
        }
        uint256 oldValue = param.value;
        param.value = value;
        emit ParamSet(name, oldValue, value);
    }

    function _param(string memory name) private view returns (Param storage param) {
        param = _params[keccak256(bytes(name))];
        if (!param.known) revert ParamsRegistryUnknownParam(name);
    }

    function _checkRelations() private view {
        if (_HOURS_PER_WEEK % _param("epoch_hours").value != 0) {
            revert ParamsRegistryInconsistent("epoch_hours", "must divide 168");
        }
        // Whitepaper: 0 < lambda_down < lambda_up <= 1, so the denominator falls slower than it rises.
        if (_param("lambda_down_bps").value >= _param("lambda_up_bps").value) {
            revert ParamsRegistryInconsistent("lambda_down_bps", "must be below lambda_up_bps");
        }
        if (_param("validator_exit_weeks").value > _param("validator_enter_weeks").value) {
            revert ParamsRegistryInconsistent("validator_exit_weeks", "must not exceed validator_enter_weeks");
        }
        if (_param("tiers_min").value > _param("tiers_max").value) {
            revert ParamsRegistryInconsistent("tiers_max", "must be at least tiers_min");
        }
    }
}
