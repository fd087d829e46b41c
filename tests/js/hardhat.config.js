// Hardhat as an Ethereum node reef did not write: `hardhat node` is started by
// tests/chain/test_js_hardhat.py. No Solidity here; reef deploys its own Vyper artifacts.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
    },
  },
};
