"""Go for the AlphaGo policy network: GnuGo games, the rules, the paper's input features."""
