"""EIP-712 typed data in eth-account's JSON form, built independently of protocols.eth.

Contract tests sign with it, and protocols tests cross-check protocols.eth against it, so it must not
reuse protocols.eth's encoder.
"""

from typing import Any

EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def typed_data(
    primary: str,
    fields: list[dict[str, str]],
    message: dict[str, Any],
    *,
    chain_id: int,
    verifying_contract: str,
    name: str = "Dolphin Network",
    version: str = "1",
) -> dict[str, Any]:
    """The full typed-data document of one `primary` struct in a (name, version, chain, contract) domain."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, primary: fields},
        "primaryType": primary,
        "domain": {
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        "message": message,
    }


def sign_typed_data(private_key, document: dict[str, Any]) -> bytes:
    """The 65-byte signature of `document` by `private_key`, made by eth-account."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    return bytes(Account.sign_message(encode_typed_data(full_message=document), private_key).signature)
